"""A fake CNI plugin for the unit tests (stdlib only, no root, touches no network).

conftest.py copies this file into a plugin dir as an executable named after the
plugin type, with a `STATE_DIR = ...` line after the shebang. Each run:

- appends one JSON line to STATE_DIR/calls.jsonl: plugin name, CNI_COMMAND, the
  CNI_* variables and PATH it got, stdin (parsed if JSON), pid and start time;
- reads its behaviour from STATE_DIR/<name>.json (re-read on every run, so a
  test can change it between calls) and acts on it.

Behaviour keys: "versions" (supportedVersions answered to VERSION), and per
command ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION") an object with
  "sleep": seconds to sleep first,     "child": spawn `sleep 1000` (pid -> child.pid),
  "flood": print forever,              "stderr": text for stderr,
  "error": {"code","msg","details"} printed on stdout with exit 1,
  "result": an object to print as the ADD result,
  "stdout": raw text to print instead,  "exit": exit status,
  "trace": log start/end times to STATE_DIR/trace.log.
Without instructions ADD passes prevResult through (as chained plugins do) or
prints a fresh result in the requested cniVersion; other verbs print nothing.
A fresh result carries the addresses asked for (runtimeConfig.ips, or a static
IPAM's addresses) and the MAC (runtimeConfig.mac, CNI_ARGS MAC=), as the
reference plugins do; a plugin named "ptp" puts its host veth first, as ptp does.
A plugin named "host-local" allocates like the real one:
the first free address of its range(s), or CNI_ARGS IP=, recorded per network
in STATE_DIR and freed by DEL.
"""

import json
import os
import subprocess
import sys
import time

DEFAULT_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]


def _state_dir():
    return globals().get("STATE_DIR") or os.environ["FAKE_CNI_STATE"]


def _vtuple(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except (AttributeError, ValueError):
        return (1, 0, 0)


def _cni_args(env):
    return dict(p.split("=", 1) for p in env.get("CNI_ARGS", "").split(";") if "=" in p)


def _asked(conf):
    """[(address, gateway)] the runtime or a static IPAM asked for, or None."""
    if not isinstance(conf, dict):
        return None
    ips = (conf.get("runtimeConfig") or {}).get("ips")
    if ips:
        # The gateway of the range the address is in, as host-local reports it.
        import ipaddress
        out = []
        ranges = [r for rset in (conf.get("ipam") or {}).get("ranges") or [] for r in rset]
        for a in ips:
            iface = ipaddress.ip_interface(a)
            gw = next((r.get("gateway") for r in ranges
                       if iface.ip in ipaddress.ip_network(r["subnet"])), None)
            out.append((a, gw or str(iface.network.network_address + 1)))
        return out
    ipam = conf.get("ipam") or {}
    if ipam.get("type") == "static" and ipam.get("addresses"):
        return [(a["address"], a.get("gateway")) for a in ipam["addresses"]]
    return None


def fresh_result(ver, env, conf=None):
    asked = _asked(conf) or [("10.22.0.5/16", "10.22.0.1")]
    mac = ((conf or {}).get("runtimeConfig") or {}).get("mac") if isinstance(conf, dict) \
        else None
    mac = mac or _cni_args(env).get("MAC") or "0a:58:0a:16:00:05"
    if _vtuple(ver) < (0, 3, 0):
        block = {"ip": asked[0][0], "routes": [{"dst": "0.0.0.0/0"}]}
        if asked[0][1] or not _asked(conf):
            block["gateway"] = asked[0][1] or "10.22.0.1"
        return {"cniVersion": ver, "ip4": block}
    ips = []
    for address, gateway in asked:
        ipc = {"address": address, "interface": 0}
        if gateway:
            ipc["gateway"] = gateway
        if _vtuple(ver) < (1, 0, 0):
            ipc["version"] = "6" if ":" in address else "4"
        ips.append(ipc)
    return {
        "cniVersion": ver,
        "interfaces": [{"name": env.get("CNI_IFNAME", ""), "mac": mac,
                        "sandbox": env.get("CNI_NETNS", "")}],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.22.0.1"]},
    }


def _as_ptp(res):
    """ptp's shape: its host veth before the container's interface, every address on the
    container's (plugins/main/ptp setupContainerVeth)."""
    if "interfaces" in res:
        res["interfaces"].insert(0, {"name": "veth5c3a1e2f", "mac": "6e:1d:a2:07:95:14"})
        for ipc in res["ips"]:
            ipc["interface"] = 1
    return res


def _host_local(state, conf, env, command):
    """A tiny host-local: one address per range set, from STATE_DIR/hostlocal-<net>.json."""
    import ipaddress
    ipam = conf.get("ipam") or {}
    path = os.path.join(state, f"hostlocal-{conf.get('name')}.json")
    try:
        with open(path) as f:
            held = json.load(f)
    except FileNotFoundError:
        held = {}
    cid = env.get("CNI_CONTAINERID", "")
    if command == "DEL":
        held = {a: c for a, c in held.items() if c != cid}
        with open(path, "w") as f:
            json.dump(held, f)
        return None
    want = _cni_args(env).get("IP")
    ips = []
    for rset in ipam.get("ranges") or []:
        r = rset[0]
        net = ipaddress.ip_network(r["subnet"])
        gw = ipaddress.ip_address(r.get("gateway") or net.network_address + 1)
        first = ipaddress.ip_address(r.get("rangeStart") or net.network_address + 1)
        last = ipaddress.ip_address(r.get("rangeEnd") or net.broadcast_address - 1)
        if want:
            addr = ipaddress.ip_address(want)
            if not first <= addr <= last or str(addr) in held:
                print(json.dumps({"code": 11, "msg": f"requested IP {want} not available"}))
                sys.exit(1)
        else:
            addr = first
            while addr == gw or str(addr) in held:
                addr += 1
            if addr > last:
                print(json.dumps({"code": 11, "msg": "no IP addresses available in range"}))
                sys.exit(1)
        held[str(addr)] = cid
        ips.append({"address": f"{addr}/{net.prefixlen}", "gateway": str(gw)})
    with open(path, "w") as f:
        json.dump(held, f)
    return {"cniVersion": conf.get("cniVersion", "1.0.0"), "ips": ips}


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main():
    state = _state_dir()
    name = os.path.basename(sys.argv[0])
    env = dict(os.environ)
    command = env.get("CNI_COMMAND", "")
    raw = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        conf = json.loads(raw)
    except ValueError:
        conf = raw
    _append(os.path.join(state, "calls.jsonl"), json.dumps({
        "plugin": name,
        "command": command,
        "env": {k: v for k, v in env.items() if k.startswith("CNI_") or k == "PATH"},
        "stdin": conf,
        "pid": os.getpid(),
        "time": time.time(),
    }))
    try:
        with open(os.path.join(state, name + ".json")) as f:
            behaviour = json.load(f)
    except FileNotFoundError:
        behaviour = {}
    todo = behaviour.get(command) or {}
    trace = os.path.join(state, "trace.log")
    if todo.get("trace"):
        _append(trace, f"start {name} {command} {os.getpid()} {time.time():.6f}")

    if todo.get("child"):
        child = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _append(os.path.join(state, "child.pid"), str(child.pid))
    if todo.get("sleep"):
        time.sleep(todo["sleep"])
    if todo.get("flood"):
        chunk = b"x" * 65536
        while True:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    if todo.get("stderr"):
        sys.stderr.write(todo["stderr"])
        sys.stderr.flush()

    status = 0
    if "stdout" in todo:
        sys.stdout.write(todo["stdout"])
    elif "error" in todo:
        sys.stdout.write(json.dumps(todo["error"]))
        status = 1
    elif command == "VERSION":
        sys.stdout.write(json.dumps({
            "cniVersion": todo.get("cniVersion", "1.0.0"),
            "supportedVersions": behaviour.get("versions", DEFAULT_VERSIONS)}))
    elif name == "host-local" and command in ("ADD", "DEL") and isinstance(conf, dict) \
            and (conf.get("ipam") or {}).get("ranges") and "result" not in todo:
        res = _host_local(state, conf, env, command)
        if res is not None:
            sys.stdout.write(json.dumps(res))
    elif command == "ADD":
        if "result" in todo:
            res = todo["result"]
        elif isinstance(conf, dict) and conf.get("prevResult") is not None:
            res = conf["prevResult"]
        else:
            ver = conf.get("cniVersion", "1.0.0") if isinstance(conf, dict) else "1.0.0"
            res = fresh_result(ver, env, conf)
            if name == "ptp":
                res = _as_ptp(res)
        sys.stdout.write(json.dumps(res))
    sys.stdout.flush()
    if todo.get("trace"):
        _append(trace, f"end {name} {command} {os.getpid()} {time.time():.6f}")
    sys.exit(todo.get("exit", status))


if __name__ == "__main__":
    main()
