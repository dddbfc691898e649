"""Cross-process locking: one operation per attachment, GC exclusive against ADD/DEL."""

import os
import subprocess
import sys
import textwrap
import time

from cni_runner.locks import LockDir

# A child process that takes one lock and reports when it got it.
CHILD = textwrap.dedent("""
    import sys, time
    from cni_runner.locks import LockDir
    lockdir, kind, arg = sys.argv[1], sys.argv[2], sys.argv[3:]
    locks = LockDir(lockdir)
    if kind == "attachment":
        cm = locks.attachment(*arg)
    else:
        cm = locks.host(arg[0] == "exclusive")
    print("ready", flush=True)
    with cm:
        print(repr(time.time()), flush=True)
""")

HOLD = 0.25


def acquire_in_child(lockdir, kind, *args):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, lockdir, kind, *args],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def acquired_at(proc):
    # Not communicate(): it reads the raw pipe and would miss what readline() buffered.
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=10) == 0
    return float(out.strip())


def hold_then_release(cm, child_args, lockdir):
    """Hold `cm` here while a child process asks for a lock; return (release time, child's)."""
    with cm:
        proc = acquire_in_child(lockdir, *child_args)
        time.sleep(HOLD)
        released = time.time()
    return released, acquired_at(proc)


def test_same_attachment_waits_for_the_other_process(tmp_path):
    locks = LockDir(str(tmp_path / "locks"))
    released, got = hold_then_release(locks.attachment("net", "c1", "eth0"),
                                      ("attachment", "net", "c1", "eth0"), locks.path)
    assert got >= released


def test_other_attachment_is_not_blocked(tmp_path):
    locks = LockDir(str(tmp_path / "locks"))
    released, got = hold_then_release(locks.attachment("net", "c1", "eth0"),
                                      ("attachment", "net", "c1", "eth1"), locks.path)
    assert got < released


def test_host_lock_shared_and_exclusive(tmp_path):
    locks = LockDir(str(tmp_path / "locks"))
    released, got = hold_then_release(locks.host(False), ("host", "shared"), locks.path)
    assert got < released  # ADD/DEL without serialize run side by side
    released, got = hold_then_release(locks.host(False), ("host", "exclusive"), locks.path)
    assert got >= released  # GC waits for them
    released, got = hold_then_release(locks.host(True), ("host", "shared"), locks.path)
    assert got >= released  # and they wait for GC


def test_lock_files_are_private(tmp_path):
    locks = LockDir(str(tmp_path / "locks"))
    with locks.attachment("n", "c", "eth0"):
        pass
    assert os.stat(locks.path).st_mode & 0o777 == 0o700
    for name in os.listdir(locks.path):
        assert os.stat(os.path.join(locks.path, name)).st_mode & 0o777 == 0o600


RUNNER = textwrap.dedent("""
    import json, sys
    from cni_runner import CNIRuntime, RuntimeConf, conflist_from_dict
    bin_dir, cache_dir, verb = sys.argv[1:4]
    net = conflist_from_dict({"cniVersion": "1.0.0", "name": "testnet",
                              "plugins": [{"type": "p1"}]})
    rt = CNIRuntime([bin_dir], cache_dir, timeout=10)
    try:
        getattr(rt, verb)(net, RuntimeConf("ctr1", "/var/run/netns/fake", "eth0"))
        print("ok")
    except Exception as e:
        print(type(e).__name__)
""")


def test_two_runtimes_adding_same_attachment_are_serialized(cni):
    cni.plugin("p1", ADD={"sleep": 0.3, "trace": True})
    procs = [subprocess.Popen([sys.executable, "-c", RUNNER, cni.bin_dir, cni.cache_dir, "add"],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted(p.communicate(timeout=20)[0].strip() for p in procs)
    # One ADD wins; the other sees its cached result instead of adding twice.
    assert outcomes == ["AlreadyAddedError", "ok"]
    assert len(cni.calls("ADD")) == 1


def test_add_and_del_of_one_attachment_do_not_overlap(cni):
    cni.plugin("p1", ADD={"sleep": 0.3, "trace": True}, DEL={"sleep": 0.1, "trace": True})
    add = subprocess.Popen([sys.executable, "-c", RUNNER, cni.bin_dir, cni.cache_dir, "add"],
                           stdout=subprocess.PIPE, text=True)
    # Start DEL once ADD's plugin is running, so the two really contend.
    deadline = time.monotonic() + 10
    while not cni.calls("ADD") and time.monotonic() < deadline:
        time.sleep(0.01)
    dele = subprocess.Popen([sys.executable, "-c", RUNNER, cni.bin_dir, cni.cache_dir,
                             "delete"], stdout=subprocess.PIPE, text=True)
    assert add.communicate(timeout=20)[0].strip() == "ok"
    assert dele.communicate(timeout=20)[0].strip() == "ok"
    with open(os.path.join(cni.state_dir, "trace.log")) as f:
        events = [line.split() for line in f]
    assert [(e[0], e[2]) for e in events] == [("start", "ADD"), ("end", "ADD"),
                                              ("start", "DEL"), ("end", "DEL")]
    # DEL ran after ADD had cached its result, so it got it as prevResult.
    (rec,) = cni.calls("DEL")
    assert rec["stdin"]["prevResult"]["ips"]
    assert rec["stdin"]["cniVersion"] == "1.0.0"
