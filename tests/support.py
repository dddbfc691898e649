"""Shared helpers for the root and Docker test layers: host inspection and cleanup."""

import os
import re
import shutil
import subprocess

# PYCNI_TEST_CNI_BIN_DIR runs the root layers on another plugin set (scripts/extras.sh
# cni-1.9); by default the system's reference plugins.
CNI_BIN_DIRS = ([os.environ["PYCNI_TEST_CNI_BIN_DIR"]] if os.environ.get("PYCNI_TEST_CNI_BIN_DIR")
                else [d for d in ("/usr/lib/cni", "/opt/cni/bin") if os.path.isdir(d)])


# The CNI plugins' chains shared by every container of every runtime on the host.
SHARED_CNI_CHAINS = {
    "filter": ("CNI-FORWARD", "CNI-ADMIN"),
    "nat": ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"),
}


def chains():
    """{table: set(chain names)} for IPv4."""
    out, table = {}, None
    for ln in run("iptables-save").stdout.splitlines():
        if ln.startswith("*"):
            table = ln[1:]
            out[table] = set()
        elif ln.startswith(":") and table:
            out[table].add(ln[1:].split()[0])
    return out


def remove_new_empty_cni_chains(before):
    """Remove the shared CNI chains that appeared since `before` and hold no rule now:
    this session's plugins made them and nobody uses them. One with rules (another
    runtime's containers, made meanwhile) stays."""
    import shlex
    now = chains()
    for table, names in SHARED_CNI_CHAINS.items():
        saved = run("iptables-save", "-t", table).stdout.splitlines()
        for chain in names:
            if chain not in now.get(table, set()) or chain in before.get(table, set()):
                continue
            if any(ln.startswith(f"-A {chain} ") for ln in saved):
                continue
            for ln in saved:
                if ln.startswith("-A ") and ln.endswith(f"-j {chain}"):
                    subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(ln[3:]),
                                   capture_output=True)
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


def cni_plugins_speak(version, dirs=None):
    """Whether the plugin set under test (CNI_BIN_DIRS, or `dirs`) speaks CNI `version`."""
    import json
    exe = os.path.join((dirs or CNI_BIN_DIRS)[0], "bridge")
    out = subprocess.run([exe], input='{"cniVersion":"0.4.0"}', capture_output=True, text=True,
                         env={"CNI_COMMAND": "VERSION"}).stdout
    return version in json.loads(out)["supportedVersions"]


def run(*args, check=True, timeout=120, input=None):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def requirement_problem(need_docker=False):
    """Why the root/Docker layers cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not CNI_BIN_DIRS:
        return "needs the reference CNI plugins (containernetworking-plugins)"
    if not shutil.which("iptables-save"):
        return "needs iptables"
    if need_docker:
        if not shutil.which("docker"):
            return "needs the docker CLI"
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            return "needs a running dockerd"
    return None


def links():
    out = run("ip", "-o", "link", "show").stdout
    return {m.group(1).split("@")[0] for m in re.finditer(r"^\d+: ([^:]+):", out, re.M)}


def netns_names():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


# Our links and namespaces that were there before this session (a run killed with its
# machine, another pycni on the host): leak checks and cleanups judge only newer ones.
_before = {"links": set(), "netns": set()}


def record_baseline():
    _before["links"] = {n for n in links() if n.startswith("pyc")}
    _before["netns"] = {n for n in netns_names() if n.startswith("pycni-")}


def new_links(prefix="pyc"):
    return {n for n in links() if n.startswith(prefix)} - _before["links"]


def new_netns():
    """pycni's namespaces (pycni-<endpoint id>) made since the session began."""
    return {n for n in netns_names() if n.startswith("pycni-")} - _before["netns"]


def iptables_lines():
    lines = []
    for cmd in ("iptables-save", "ip6tables-save"):
        if shutil.which(cmd):
            lines += run(cmd).stdout.splitlines()
    return [ln for ln in lines if ln and not ln.startswith("#")]


def iptables_mentioning(*needles):
    return [ln for ln in iptables_lines() if any(n in ln for n in needles)]


def delete_rules(table, wanted):
    """Delete every rule of an iptables table whose iptables-save line wanted(line) picks."""
    import shlex
    for ln in run("iptables-save", "-t", table).stdout.splitlines():
        if ln.startswith("-A ") and wanted(ln):
            subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(ln[3:]),
                           capture_output=True)


def files_under(path):
    out = []
    for root, _, files in os.walk(path):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def ip_files(path):
    """host-local's allocation files (one per address) under a data dir."""
    return [f for f in files_under(path)
            if re.match(r"^[0-9a-f.:]+$", os.path.basename(f)) and
            not os.path.basename(f).startswith("last_reserved_ip")]


def ping_cmd(target, count=1, wait=3):
    """ping, from iputils if present, else busybox (a dependency of the tests)."""
    exe = [shutil.which("ping")] if shutil.which("ping") else [shutil.which("busybox") or "/bin/busybox", "ping"]
    return exe + ["-c", str(count), "-W", str(wait), target]


def hexid():
    import secrets
    return secrets.token_hex(32)


def body(obj):
    import json
    return json.dumps(obj).encode()


def post_raw(socket_path, path, payload=b"", timeout=120):
    """POST to a plugin's unix socket as dockerd does (no Content-Type);
    (status, headers, body bytes)."""
    import http.client
    import json
    import socket as _socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)

    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn = Conn("localhost", timeout=timeout)
    try:
        conn.request("POST", path, body=data,
                     headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    return resp.status, resp.headers, raw


def post(socket_path, path, payload=b"", timeout=120):
    """post_raw with the JSON answer decoded: (status, dict)."""
    import json
    status, _, raw = post_raw(socket_path, path, payload, timeout)
    return status, json.loads(raw) if raw else {}


def settle_db(db_path, timeout=60):
    """Wait until a pycni store has no deferred CNI DEL pending (rows in state "deleting")."""
    import sqlite3
    import time
    deadline = time.monotonic() + timeout
    while True:
        db = sqlite3.connect(db_path, timeout=30)
        try:
            n = db.execute("SELECT count(*) FROM endpoints WHERE state='deleting'").fetchone()[0]
        finally:
            db.close()
        if n == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} endpoint(s) still being deleted after {timeout}s")
        time.sleep(0.1)
