"""Running plugin executables (libcni's pkg/invoke).

Every exec gets the six CNI_* variables on top of a cleaned environment, a
deadline after which its whole process group is killed (IPAM plugins run as
children of the main plugin), and a cap on what it may print.
"""

import errno
import json
import os
import selectors
import signal
import subprocess
import threading
import time

from . import deadline

from .errors import PluginError, PluginNotFoundError, ResultError, INTERNAL

DEFAULT_TIMEOUT = 60.0
MAX_OUTPUT = 1 << 20
ETXTBSY_RETRIES = 5
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_plugin(ptype, plugin_dirs):
    """First regular executable file called `ptype` in the plugin dirs (CNI_PATH order)."""
    if not ptype or "/" in ptype or ptype in (".", ".."):
        raise PluginNotFoundError(f"invalid plugin type {ptype!r}")
    for d in plugin_dirs:
        path = os.path.join(d, ptype)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise PluginNotFoundError(
        f"CNI plugin {ptype!r} not found in {':'.join(plugin_dirs) or '(no plugin dirs)'}")


def base_environ():
    """The caller's environment without CNI_* (CNI_NETNS_OVERRIDE must never leak through)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    path = env.get("PATH", "")
    have = path.split(":") if path else []
    # Plugins exec iptables, which lives in sbin dirs that a service's PATH may lack.
    missing = [p for p in SYSTEM_PATH.split(":") if p not in have]
    env["PATH"] = ":".join(have + missing)
    return env


def format_cni_args(pairs):
    """[(k, v), ...] -> 'IgnoreUnknown=1;K=V;...' with IgnoreUnknown first, once."""
    out = ["IgnoreUnknown=1"]
    for k, v in pairs:
        k, v = str(k), str(v)
        if not k or any(c in k for c in ";=\0") or any(c in v for c in ";\0"):
            raise ValueError(f"invalid CNI_ARGS pair {k!r}={v!r}")
        if k == "IgnoreUnknown":
            continue
        out.append(f"{k}={v}")
    return ";".join(out)


def _plugin_name(path):
    return os.path.basename(path)


def _read_bounded(proc, stdin_data, timeout, max_output):
    """Feed stdin, collect stdout/stderr up to max_output, honour the deadline.

    One selector loop does it all, with no helper thread: stdin is written as the
    pipe accepts it (a plugin that never reads cannot block us), and the exit is
    awaited on a pidfd rather than by Popen.wait's sleep-and-poll, which added
    about a millisecond to each exec here.
    """
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    pending = memoryview(stdin_data)
    os.set_blocking(proc.stdin.fileno(), False)
    if pending:
        sel.register(proc.stdin, selectors.EVENT_WRITE, None)
    else:
        proc.stdin.close()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    overflow = False
    timed_out = False
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in sel.select(remaining):
            if key.fileobj is proc.stdin:
                try:
                    pending = pending[os.write(proc.stdin.fileno(), pending):]
                except (BrokenPipeError, BlockingIOError, OSError) as e:
                    if isinstance(e, BlockingIOError):
                        continue
                    pending = pending[:0]  # the plugin closed stdin: its exit says why
                if not pending:
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
                continue
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if len(key.data) > max_output:
                overflow = True
        if overflow:
            break
    sel.close()
    if not proc.stdin.closed:
        proc.stdin.close()
    if timed_out or overflow:
        _kill_group(proc)
        _wait_exit(proc, 5)
    elif not _wait_exit(proc, max(0.1, deadline - time.monotonic())):
        # Closed its output but kept running past the deadline.
        _kill_group(proc)
        _wait_exit(proc, 5)
        timed_out = True
    for f in (proc.stdout, proc.stderr):
        f.close()
    return bytes(out), bytes(err), timed_out, overflow


def _wait_exit(proc, timeout):
    """Reap proc within timeout; False if it is still running."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel), or reaped already
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        with selectors.DefaultSelector() as waiter:
            waiter.register(fd, selectors.EVENT_READ)
            if not waiter.select(timeout):
                return False
    finally:
        os.close(fd)
    proc.wait()
    return True


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exec_plugin(path, env, stdin_data, timeout=DEFAULT_TIMEOUT, max_output=MAX_OUTPUT):
    """Run one plugin; return its stdout on success, raise PluginError otherwise."""
    name = _plugin_name(path)
    command = env.get("CNI_COMMAND", "")
    timeout = deadline.remaining(timeout)
    if timeout <= 0:
        raise PluginError(name, INTERNAL, "not run: the caller's deadline had passed",
                          command=command)
    for attempt in range(ETXTBSY_RETRIES + 1):
        try:
            proc = subprocess.Popen(
                [path], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
            break
        except OSError as e:
            # The binary is being replaced (package upgrade): try again shortly.
            if e.errno == errno.ETXTBSY and attempt < ETXTBSY_RETRIES:
                time.sleep(0.05 * (attempt + 1))
                continue
            raise PluginError(name, INTERNAL, f"cannot execute {path}: {e.strerror}",
                              command=command) from None
    out, err, timed_out, overflow = _read_bounded(proc, stdin_data, timeout, max_output)
    if timed_out:
        raise PluginError(name, INTERNAL, f"timed out after {timeout:g}s and was killed",
                          command=command)
    if overflow:
        raise PluginError(name, INTERNAL,
                          f"printed more than {max_output} bytes and was killed",
                          command=command)
    if proc.returncode != 0:
        raise _error_from_output(name, command, proc.returncode, out, err)
    return out


def _error_from_output(name, command, rc, out, err):
    text = out.strip()
    if text:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and ("code" in obj or "msg" in obj):
            code = obj.get("code")
            if not isinstance(code, int) or isinstance(code, bool):
                code = INTERNAL
            return PluginError(name, code, str(obj.get("msg", "")),
                               str(obj.get("details", "") or ""), command)
        return PluginError(name, INTERNAL, _short(text), _short(err.strip()), command)
    msg = _short(err.strip()) or f"exited with status {rc} and printed nothing"
    return PluginError(name, INTERNAL, msg, command=command)


def _short(data, limit=2000):
    s = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return s if len(s) <= limit else s[:limit] + "..."


class VersionProber:
    """Asks plugins which spec versions they support, once per binary (path, mtime, size)."""

    def __init__(self, timeout=10.0):
        self.timeout = timeout
        self._cache = {}
        self._lock = threading.Lock()

    def supported(self, path, ask_version="1.0.0"):
        st = os.stat(path)
        # A replaced binary is a new inode even when size and mtime match.
        key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        env = base_environ()
        env.update(CNI_COMMAND="VERSION", CNI_CONTAINERID="dummy", CNI_NETNS="dummy",
                   CNI_IFNAME="dummy", CNI_ARGS="", CNI_PATH=os.path.dirname(path))
        out = exec_plugin(path, env, json.dumps({"cniVersion": ask_version}).encode(),
                          timeout=self.timeout)
        try:
            info = json.loads(out)
            versions = info.get("supportedVersions")
            if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
                raise ValueError("no supportedVersions list")
        except (ValueError, AttributeError) as e:
            raise ResultError(f"CNI plugin {_plugin_name(path)}: bad VERSION answer: {e}") from None
        with self._lock:
            self._cache[key] = versions
        return versions
