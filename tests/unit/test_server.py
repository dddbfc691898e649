"""One server per state dir and socket (serverlock.py, server.serve), without gunicorn
running: a second server refuses, and no server removes a socket another answers on."""

import os
import shutil
import socket
import tempfile

import pytest

from cnm_bridge.docker import server
from cnm_bridge.state import serverlock
from cnm_bridge.settings import Settings


@pytest.fixture
def short_dir():
    # A unix socket's path has at most 107 bytes: pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="pycni-srv-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s


def test_a_second_server_on_a_state_dir_refuses_naming_the_first(short_dir):
    first = serverlock.hold_state_dir(short_dir)
    with pytest.raises(serverlock.AlreadyServing, match=f"pid {os.getpid()}"):
        serverlock.hold_state_dir(short_dir)
    first.release()
    serverlock.hold_state_dir(short_dir).release()  # free again once the first is gone


def test_a_socket_another_server_answers_on_is_refused_a_stale_one_removed(short_dir):
    path = os.path.join(short_dir, "p.sock")
    live = listen(path)
    with pytest.raises(serverlock.AlreadyServing, match="answers on " + path):
        serverlock.claim_socket(path)
    assert os.path.exists(path)
    live.close()  # its file stays: a server that died
    serverlock.claim_socket(path)
    assert not os.path.exists(path)


def test_at_stop_only_the_socket_we_bound_is_removed(short_dir):
    path = os.path.join(short_dir, "p.sock")
    ours = listen(path)
    inode = os.stat(path).st_ino
    os.unlink(path)  # someone removed it, and another server bound the path
    theirs = listen(path)
    serverlock.unlink_if_ours(path, inode)
    assert os.path.exists(path)
    serverlock.unlink_if_ours(path, os.stat(path).st_ino)
    assert not os.path.exists(path)
    ours.close()
    theirs.close()


def test_serve_takes_the_lock_before_it_binds(short_dir, monkeypatch):
    s = Settings(conf_dir=short_dir, state_dir=os.path.join(short_dir, "state"),
                 bin_dirs=[short_dir], socket=os.path.join(short_dir, "p.sock"))
    os.makedirs(s.state_dir)
    ran = []
    monkeypatch.setattr(server._Server, "run", lambda self: ran.append(self.options["bind"]))
    held = serverlock.hold_state_dir(s.state_dir)
    with pytest.raises(serverlock.AlreadyServing, match=s.state_dir):
        server.serve(s, factory=None)
    assert ran == []
    held.release()
    live = listen(s.socket)
    with pytest.raises(serverlock.AlreadyServing, match=s.socket):
        server.serve(s, factory=None)
    live.close()
    server.serve(s, factory=None)
    assert ran == [[f"unix:{s.socket}"]]


def test_serve_names_a_damaged_store_in_one_line(short_dir, monkeypatch, capsys):
    """Not a worker failing to boot, again and again: one line, the file and the fix."""
    from cnm_bridge import cli
    state = os.path.join(short_dir, "state")
    os.makedirs(state, mode=0o700)
    with open(os.path.join(state, "pycni.db"), "wb") as f:
        f.write(b"\x01not sqlite" * 400)
    ran = []
    monkeypatch.setattr(server._Server, "run", lambda self: ran.append(1))
    rc = cli.main(["serve", "--state-dir", state, "--conf-dir", short_dir,
                   "--bin-dir", short_dir, "--socket", os.path.join(short_dir, "p.sock")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and ran == [] and len(err.splitlines()) == 1
    assert os.path.join(state, "pycni.db") in err and "move it aside" in err


def test_serve_names_an_unwritable_state_dir(short_dir, monkeypatch, capsys):
    import errno
    from cnm_bridge import cli
    from cnm_bridge.host import security

    def read_only(settings):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), settings.state_dir)
    monkeypatch.setattr(security, "prepare_state_dir", read_only)
    rc = cli.main(["serve", "--state-dir", os.path.join(short_dir, "s"), "--conf-dir",
                   short_dir, "--bin-dir", short_dir, "--socket", os.path.join(short_dir, "p")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Read-only file system" in err
