"""Loading and validating network configuration lists (libcni's conf.go).

A conf dir holds `*.conflist` files (a list of plugins) and legacy `*.conf` /
`*.json` files (one plugin), which are wrapped into one-plugin lists. Files are
read in byte order, lists first; the first file that declares a name wins.
Unparsable files are skipped with a warning instead of breaking every network.
"""

import json
import logging
import os
import re
from dataclasses import dataclass, field

from . import version as cniversion
from .errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
LIST_EXTENSIONS = (".conflist",)
SINGLE_EXTENSIONS = (".conf", ".json")
MAX_CONFIG_BYTES = 1 << 20


@dataclass
class PluginConfig:
    """One plugin object of a list, kept as the raw dict so unknown keys survive."""

    raw: dict

    @property
    def type(self):
        return self.raw["type"]


@dataclass
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: list
    raw: dict
    disable_check: bool = False
    disable_gc: bool = False
    cni_versions: list = field(default_factory=list)
    source: str = ""

    @property
    def bytes(self):
        return json.dumps(self.raw, sort_keys=True).encode()

    def offered_versions(self):
        """Versions the list may run at, newest first (cniVersion plus cniVersions)."""
        offered = list(self.cni_versions)
        if self.cni_version:
            offered.append(self.cni_version)
        return cniversion.newest_first(offered)

    def may_run_at(self, minimum):
        """True if the list offers `minimum` or a later version (whether its plugins speak
        it is the runtime's question): e.g. 1.1.0 for STATUS and GC, without a probe."""
        return any(cniversion.at_least(v, minimum) for v in self.offered_versions())


def validate_name(name, what="network name"):
    # fullmatch: with match(), "$" also matches before a trailing newline, which
    # would let "net\n" through into cache file names (Go's regexp does not).
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {what} {name!r}: must match {NAME_RE.pattern}"
        )
    return name


def validate_container_id(container_id):
    return validate_name(container_id, "container id")


def validate_ifname(ifname):
    if not isinstance(ifname, str) or not ifname:
        raise ConfigError("interface name is empty")
    if len(ifname.encode()) > 15:
        raise ConfigError(f"interface name {ifname!r} is longer than 15 bytes")
    if ifname in (".", ".."):
        raise ConfigError(f"interface name {ifname!r} is not allowed")
    if any(c in ifname for c in "/:") or any(c.isspace() for c in ifname) or "\0" in ifname:
        raise ConfigError(
            f"interface name {ifname!r} must not contain '/', ':', NUL or whitespace"
        )
    return ifname


def _parse_bool(value, key):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key} must be a boolean or \"true\"/\"false\", got {value!r}")


def _check_plugin(obj, where):
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: a plugin must be a JSON object")
    ptype = obj.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigError(f"{where}: plugin has no \"type\"")
    if "/" in ptype or "\\" in ptype or ptype in (".", ".."):
        raise ConfigError(f"{where}: plugin type {ptype!r} must be a plain file name")
    return PluginConfig(obj)


def conflist_from_dict(raw, source="", sibling_dir=None):
    """Validate a conflist dict and return a NetworkConfigList.

    `sibling_dir` is the conf dir: spec 1.1 lets plugins of list N live as
    `<dir>/N/*.conf` unless the list sets loadOnlyInlinedPlugins.
    """
    where = source or "network config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: no \"name\"")
    validate_name(name)
    cni_version = raw.get("cniVersion", "")
    if cni_version:
        cniversion.parse(cni_version)
    cni_versions = raw.get("cniVersions") or []
    if not isinstance(cni_versions, list):
        raise ConfigError(f"{where}: cniVersions must be a list")
    for v in cni_versions:
        cniversion.parse(v)
    if not cni_version and not cni_versions:
        raise ConfigError(f"{where}: no \"cniVersion\"")

    plugins_raw = raw.get("plugins")
    inline_only = _parse_bool(raw.get("loadOnlyInlinedPlugins", False), "loadOnlyInlinedPlugins")
    if plugins_raw is None:
        plugins_raw = []
    if not isinstance(plugins_raw, list):
        raise ConfigError(f"{where}: \"plugins\" must be a list")
    plugins = [_check_plugin(p, f"{where} plugin {i}") for i, p in enumerate(plugins_raw)]
    if sibling_dir and not inline_only:
        extra = _load_sibling_plugins(os.path.join(sibling_dir, name))
        if extra:
            plugins.extend(extra)
            raw = dict(raw, plugins=[p.raw for p in plugins])
    if not plugins:
        raise ConfigError(f"{where}: no plugins")
    return NetworkConfigList(
        name=name,
        cni_version=cni_version,
        cni_versions=list(cni_versions),
        plugins=plugins,
        raw=raw,
        disable_check=_parse_bool(raw.get("disableCheck", False), "disableCheck"),
        disable_gc=_parse_bool(raw.get("disableGC", False), "disableGC"),
        source=source,
    )


def _load_sibling_plugins(folder):
    if not os.path.isdir(folder):
        return []
    plugins = []
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".conf"):
            continue
        path = os.path.join(folder, fname)
        plugins.append(_check_plugin(_read_json(path), path))
    return plugins


def conflist_from_single(raw, source=""):
    """Wrap a legacy single-plugin config into a one-plugin list (libcni ConfListFromConf)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'network config'}: must be a JSON object")
    wrapped = {"name": raw.get("name"), "plugins": [raw]}
    if "cniVersion" in raw:
        wrapped["cniVersion"] = raw["cniVersion"]
    return conflist_from_dict(wrapped, source)


def conflist_from_bytes(data, source=""):
    """Parse a conflist (or a single config: one with "type" and no "plugins")."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source or 'network config'}: not valid JSON: {e}") from None
    if isinstance(raw, dict) and "plugins" not in raw and "type" in raw:
        return conflist_from_single(raw, source)
    return conflist_from_dict(raw, source)


def _read_json(path):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None


def config_files(conf_dir):
    """The files of a conf dir in the order libcni reads them: lists, then single configs."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    lists = [n for n in names if n.endswith(LIST_EXTENSIONS)]
    singles = [n for n in names if n.endswith(SINGLE_EXTENSIONS)]
    paths = [os.path.join(conf_dir, n) for n in lists + singles]
    return [p for p in paths if os.path.isfile(p)]


def load_file(path, conf_dir=None):
    raw = _read_json(path)
    if path.endswith(LIST_EXTENSIONS):
        return conflist_from_dict(raw, path, sibling_dir=conf_dir)
    return conflist_from_single(raw, path)


def load_all(conf_dir):
    """Every valid list in conf_dir, first file per name; returns (lists, problems).

    `problems` is a list of (path, reason) for the files that were skipped.
    """
    seen = {}
    problems = []
    for path in config_files(conf_dir):
        try:
            conf = load_file(path, conf_dir)
        except ConfigError as e:
            log.warning("skipping CNI config %s: %s", path, e)
            problems.append((path, str(e)))
            continue
        seen.setdefault(conf.name, conf)
    return list(seen.values()), problems


def load_by_name(conf_dir, name):
    """The list called `name`; a clear error if it is missing or only in broken files."""
    validate_name(name)
    lists, problems = load_all(conf_dir)
    for conf in lists:
        if conf.name == name:
            return conf
    hint = ""
    # A broken file whose name matches is most likely the one the user meant.
    related = [f"{p}: {why}" for p, why in problems if name in os.path.basename(p)]
    if related:
        hint = "; unusable file(s): " + "; ".join(related)
    elif problems:
        hint = f"; {len(problems)} unparsable file(s) skipped: " + "; ".join(
            f"{p}: {why}" for p, why in problems)
    raise NotFoundError(f"no CNI network named {name!r} in {conf_dir}{hint}")
