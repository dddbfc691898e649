"""security.py: what root would run or read must be root's to change."""

import os

import pytest

from cnm_bridge.host.security import UnsafeSetup, check_dirs
from cnm_bridge.settings import Settings


@pytest.fixture
def dirs(tmp_path):
    conf, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf.mkdir()
    bin_dir.mkdir()
    (conf / "10-lan.conflist").write_text("{}")
    (bin_dir / "bridge").write_text("#!/bin/sh\n")
    os.chmod(bin_dir / "bridge", 0o755)
    return Settings(conf_dir=str(conf), bin_dirs=[str(bin_dir)],
                    state_dir=str(tmp_path / "state"))


@pytest.mark.parametrize("which", ["conf", "plugin"])
def test_a_file_others_can_write_is_refused(dirs, which):
    check_dirs(dirs)  # all root's (or this user's): fine
    path = (os.path.join(dirs.conf_dir, "10-lan.conflist") if which == "conf"
            else os.path.join(dirs.bin_dirs[0], "bridge"))
    os.chmod(path, 0o664 if which == "conf" else 0o757)
    with pytest.raises(UnsafeSetup, match=f"{path} is writable by group or others"):
        check_dirs(dirs)


def test_a_readme_beside_the_conflists_is_not_judged(dirs):
    readme = os.path.join(dirs.conf_dir, "README")
    with open(readme, "w") as f:
        f.write("x")
    os.chmod(readme, 0o666)
    check_dirs(dirs)
