"""Where pycni finds things: command-line options, then PYCNI_* variables, then defaults."""

import os
from dataclasses import dataclass, field

from .network.options import bool_word

DEFAULT_SOCKET = "/run/docker/plugins/pycni.sock"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")
DEFAULT_STATE_DIR = "/var/lib/pycni"
DEFAULT_PLUGIN_TIMEOUT = 60.0
DEFAULT_CALL_DEADLINE = 25.0


@dataclass
class Settings:
    socket: str = DEFAULT_SOCKET
    conf_dir: str = DEFAULT_CONF_DIR
    bin_dirs: list = field(default_factory=lambda: list(DEFAULT_BIN_DIRS))
    state_dir: str = DEFAULT_STATE_DIR
    plugin_timeout: float = DEFAULT_PLUGIN_TIMEOUT
    log_level: str = "info"
    reconcile_interval: float = 300.0
    defer_delete: bool = True
    # Seconds one Docker call may take: dockerd gives up on a plugin's call after 30 s
    # (a managed plugin's: `docker plugin enable --timeout`), so pycni ends it first.
    call_deadline: float = DEFAULT_CALL_DEADLINE
    # "local": each host's dockerd allocates addresses (swarm: --config-only networks per
    # host, --config-from on a manager); "global": the swarm manager does, cluster-wide.
    scope: str = "local"
    # Where the host's /run is seen (the managed plugin: /host); "" in the host's own
    # mount namespace.
    sandbox_root: str = ""

    @property
    def db_path(self):
        return os.path.join(self.state_dir, "pycni.db")

    @property
    def cni_cache_dir(self):
        # Private: other runtimes' GC scans the shared /var/lib/cni.
        return os.path.join(self.state_dir, "cni")

    @property
    def ipam_dir(self):
        return os.path.join(self.state_dir, "ipam")


def split_dirs(values):
    """['a:b', 'c'] -> ['a', 'b', 'c'] (--bin-dir is repeatable or colon-separated)."""
    out = []
    for v in values or []:
        out.extend(d for d in v.split(":") if d)
    return out


def from_sources(socket=None, conf_dir=None, bin_dirs=None, state_dir=None,
                 plugin_timeout=None, log_level=None, env=None):
    env = os.environ if env is None else env
    return Settings(
        socket=socket or env.get("PYCNI_SOCKET") or DEFAULT_SOCKET,
        conf_dir=conf_dir or env.get("PYCNI_CONF_DIR") or DEFAULT_CONF_DIR,
        bin_dirs=split_dirs(bin_dirs) or split_dirs([env.get("PYCNI_BIN_DIR", "")])
        or list(DEFAULT_BIN_DIRS),
        state_dir=state_dir or env.get("PYCNI_STATE_DIR") or DEFAULT_STATE_DIR,
        plugin_timeout=float(plugin_timeout or env.get("PYCNI_PLUGIN_TIMEOUT")
                             or DEFAULT_PLUGIN_TIMEOUT),
        log_level=(log_level or env.get("PYCNI_LOG_LEVEL") or "info").lower(),
        reconcile_interval=float(env.get("PYCNI_RECONCILE_INTERVAL") or 300),
        defer_delete=bool_word(env.get("PYCNI_DEFER_DELETE") or "1") is not False,
        call_deadline=float(env.get("PYCNI_CALL_DEADLINE") or DEFAULT_CALL_DEADLINE),
        scope=scope_setting(env.get("PYCNI_SCOPE") or "local"),
        sandbox_root=sandbox_root_setting(env.get("PYCNI_SANDBOX_ROOT") or ""),
    )


def sandbox_root_setting(value):
    value = value.strip()
    if value and not value.startswith("/"):
        raise ValueError(f"PYCNI_SANDBOX_ROOT={value!r} must be an absolute path (or empty)")
    return value


SCOPES = ("local", "global")


def scope_setting(value):
    value = value.strip().lower()
    if value not in SCOPES:
        raise ValueError(f"PYCNI_SCOPE={value!r} must be one of {', '.join(SCOPES)}")
    return value
