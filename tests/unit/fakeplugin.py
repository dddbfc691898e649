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


def fresh_result(ver, env):
    if _vtuple(ver) < (0, 3, 0):
        return {"cniVersion": ver,
                "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1",
                        "routes": [{"dst": "0.0.0.0/0"}]}}
    ipc = {"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 0}
    if _vtuple(ver) < (1, 0, 0):
        ipc["version"] = "4"
    return {
        "cniVersion": ver,
        "interfaces": [{"name": env.get("CNI_IFNAME", ""), "mac": "0a:58:0a:16:00:05",
                        "sandbox": env.get("CNI_NETNS", "")}],
        "ips": [ipc],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.22.0.1"]},
    }


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
    elif command == "ADD":
        if "result" in todo:
            res = todo["result"]
        elif isinstance(conf, dict) and conf.get("prevResult") is not None:
            res = conf["prevResult"]
        else:
            ver = conf.get("cniVersion", "1.0.0") if isinstance(conf, dict) else "1.0.0"
            res = fresh_result(ver, env)
        sys.stdout.write(json.dumps(res))
    sys.stdout.flush()
    if todo.get("trace"):
        _append(trace, f"end {name} {command} {os.getpid()} {time.time():.6f}")
    sys.exit(todo.get("exit", status))


if __name__ == "__main__":
    main()
