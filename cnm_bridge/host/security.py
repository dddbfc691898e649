"""Start-up checks: pycni runs as root and executes what these dirs hold.

A conf or plugin dir that others can write lets them choose what root runs; a
state dir they can write lets them rewrite which links and netns pycni deletes.
"""

import os
import stat

from cni_runner.config import LIST_EXTENSIONS, SINGLE_EXTENSIONS

CONF_EXTENSIONS = LIST_EXTENSIONS + SINGLE_EXTENSIONS


class UnsafeSetup(Exception):
    """pycni refuses to start; the message says why and how to fix it."""


def writable_by_others(path):
    st = os.stat(path)
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(os.path.realpath(path))
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)), st


def check_dirs(settings):
    problems = []
    dirs = [("state dir", settings.state_dir), ("conf dir", settings.conf_dir)]
    dirs += [("plugin dir", d) for d in settings.bin_dirs]
    for what, path in dirs:
        if not os.path.isdir(path):
            continue  # made private by pycni (state) or simply not used (conf, plugins)
        unsafe, st = writable_by_others(path)
        if unsafe:
            problems.append(f"{what} {path} is writable by group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod go-w {path}")
        elif os.geteuid() == 0 and st.st_uid != 0:
            problems.append(f"{what} {path} is owned by uid {st.st_uid}, not root; "
                            f"run: chown root {path}")
    for what, path in _files_root_runs_or_reads(settings):
        try:
            unsafe, st = writable_by_others(path)
        except OSError:
            continue  # gone meanwhile, or a dangling link: nothing to run
        if unsafe:
            problems.append(f"{what} {path} is writable by group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod go-w {path}")
    if problems:
        raise UnsafeSetup("pycni refuses to start: " + "; ".join(problems))


def _files_root_runs_or_reads(settings):
    """The conflists (and spec 1.1's per-list plugin folders) and the plugin binaries: a
    safe dir does not help if the file in it can be rewritten."""
    def entries(d):
        try:
            return [os.path.join(d, n) for n in sorted(os.listdir(d))]
        except OSError:
            return []
    for path in entries(settings.conf_dir):
        if path.endswith(CONF_EXTENSIONS):
            yield "conflist", path
        elif os.path.isdir(path):
            yield "conf folder", path
            yield from (("conf", p) for p in entries(path) if p.endswith(CONF_EXTENSIONS))
    for d in settings.bin_dirs:
        yield from (("plugin", p) for p in entries(d) if os.path.isfile(p))


def prepare_state_dir(settings):
    """Check the dirs, then make the state dir and CNI's result cache in it, private.

    Done by `pycni serve` before the socket exists (and again by the app), so a
    state dir is there, root-only, whenever the socket is.
    """
    check_dirs(settings)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    # Made now, private, rather than at the first ADD.
    os.makedirs(os.path.join(settings.cni_cache_dir, "results"), mode=0o700, exist_ok=True)
