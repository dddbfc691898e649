"""The CNI runtime: ADD, CHECK, DEL, GC and STATUS of a network list (libcni's api.go).

Lifecycle rules kept here (spec "Lifecycle & Ordering"):
- ADD runs the list forward, chaining prevResult; a failed ADD is DELeted at once.
- An intent entry is cached before the first plugin runs, so a runtime that dies
  mid-ADD leaves enough behind for a later DEL to clean up.
- DEL runs in reverse with the cached config, args and result, tolerates a
  missing cache, and keeps the entry when a plugin fails so DEL can be retried.
- Never two ADDs for one attachment without a DEL between.
"""

import contextlib
import copy
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from . import config as cniconfig
from . import result as cniresult
from . import version as cniversion
from .cache import CacheEntry, ResultCache
from .errors import AlreadyAddedError, ConfigError, NotAddedError, PluginError, VersionError
from .invoke import (DEFAULT_TIMEOUT, MAX_OUTPUT, VersionProber, base_environ, exec_plugin,
                     find_plugin, format_cni_args)
from .locks import LockDir

log = logging.getLogger(__name__)


@dataclass
class RuntimeConf:
    """Who is being attached: libcni's RuntimeConf."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list = field(default_factory=list)
    capability_args: dict = field(default_factory=dict)

    @classmethod
    def from_cache(cls, entry, netns=None):
        """The RuntimeConf a cached attachment was made with (netns may be overridden)."""
        return cls(entry.container_id, entry.netns if netns is None else netns, entry.ifname,
                   list(entry.cni_args), dict(entry.capability_args))

    def validate(self):
        cniconfig.validate_container_id(self.container_id)
        cniconfig.validate_ifname(self.ifname)
        try:
            format_cni_args(self.args)
        except ValueError as e:
            raise ConfigError(str(e)) from None


class CNIRuntime:
    def __init__(self, plugin_dirs, cache_dir, timeout=DEFAULT_TIMEOUT, serialize=True,
                 max_output=MAX_OUTPUT, host_lock=True):
        """`serialize`: ADD and DEL hold the host-wide lock exclusively (the reference
        plugins race on shared iptables chains and bridge addresses), else shared.
        `host_lock=False` skips that lock altogether: only for lists that touch no
        shared host state, such as an IPAM plugin run alone (host-local locks its
        own data dir), so they never wait behind another list's iptables work.
        """
        self.plugin_dirs = list(plugin_dirs)
        self.host_lock = host_lock
        self.cache = ResultCache(cache_dir)
        self.locks = LockDir(os.path.join(cache_dir, "locks"))
        self.timeout = timeout
        self.serialize = serialize
        self.max_output = max_output
        # VERSION answers at once; never let it outwait the deadline the caller chose.
        self.prober = VersionProber(timeout=min(timeout, 10.0))
        self._stats = threading.local()

    def _host(self, exclusive):
        return self.locks.host(exclusive) if self.host_lock else contextlib.nullcontext()

    # -- versions and plugins -------------------------------------------------

    def plugin_paths(self, conflist):
        return [find_plugin(p.type, self.plugin_dirs) for p in conflist.plugins]

    def select_version(self, conflist):
        """Highest version that the list offers, this runtime speaks and every plugin supports."""
        offered = [v for v in conflist.offered_versions() if v in cniversion.SUPPORTED_VERSIONS]
        if not offered:
            raise VersionError(
                f"network {conflist.name}: none of its versions "
                f"{conflist.offered_versions()} is one this runtime supports "
                f"{list(cniversion.SUPPORTED_VERSIONS)}")
        support = {}
        for plugin, path in zip(conflist.plugins, self.plugin_paths(conflist)):
            support[plugin.type] = self.prober.supported(path)
        for v in offered:
            if all(v in s for s in support.values()):
                return v
        lacking = "; ".join(f"plugin {t} supports {s}" for t, s in support.items()
                            if not any(v in s for v in offered))
        raise VersionError(
            f"network {conflist.name} offers CNI versions {offered}, but no version is "
            f"supported by every plugin: {lacking or support}")

    def validate(self, conflist):
        """Check that every plugin exists and a version can be chosen; return the version."""
        return self.select_version(conflist)

    # -- invocation -----------------------------------------------------------

    def _stdin(self, conflist, plugin, ver, rt_caps, prev):
        conf = copy.deepcopy(plugin.raw)
        caps = conf.pop("capabilities", None)
        if not isinstance(caps, dict):
            caps = {}  # not an object: declares nothing
        conf["name"] = conflist.name
        conf["cniVersion"] = ver
        runtime_config = {k: v for k, v in (rt_caps or {}).items() if caps.get(k) is True}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        else:
            conf.pop("runtimeConfig", None)
        if prev is not None:
            conf["prevResult"] = cniresult.render(prev, ver)
        else:
            conf.pop("prevResult", None)
        return json.dumps(conf).encode()

    def _env(self, command, rt, netns, args):
        env = base_environ()
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=rt.container_id,
            CNI_NETNS=netns or "",
            CNI_IFNAME=rt.ifname,
            CNI_ARGS=format_cni_args(args),
            CNI_PATH=":".join(self.plugin_dirs),
        )
        return env

    def _exec(self, path, env, stdin):
        started = time.perf_counter()
        try:
            return exec_plugin(path, env, stdin, timeout=self.timeout,
                               max_output=self.max_output)
        finally:
            self._stats.exec_seconds = self.exec_seconds() + time.perf_counter() - started

    def exec_seconds(self):
        """Time this thread spent waiting on plugin executables since the last reset."""
        return getattr(self._stats, "exec_seconds", 0.0)

    def reset_exec_seconds(self):
        self._stats.exec_seconds = 0.0

    # -- lifecycle ------------------------------------------------------------

    def add(self, conflist, rt, prev_result=None):
        """Run ADD over the list; return the final result rendered in the list's version.

        `prev_result` (an extension of libcni) is handed to the first plugin as
        prevResult: it lets a caller run a chained plugin such as portmap on its
        own, later, against an attachment another list made.
        """
        rt.validate()
        name = conflist.name
        with self.locks.attachment(name, rt.container_id, rt.ifname), \
                self._host(exclusive=self.serialize):
            entry = self.cache.load(name, rt.container_id, rt.ifname)
            if entry is not None and entry.result is not None:
                raise AlreadyAddedError(
                    f"container {rt.container_id} already has interface {rt.ifname} on "
                    f"network {name}; DEL it before adding again")
            if entry is not None or self.cache.exists(name, rt.container_id, rt.ifname):
                # A half-done ADD (the runtime died mid-way): finish its DEL first.
                self._delete(conflist, rt)
            ver = self.select_version(conflist)
            paths = self.plugin_paths(conflist)
            intent = CacheEntry(rt.container_id, rt.ifname, name, conflist.bytes, rt.netns,
                                list(rt.args), dict(rt.capability_args))
            self.cache.save(intent)
            prev = None
            try:
                if prev_result is not None:
                    prev = cniresult.normalize(prev_result, ver)
                for plugin, path in zip(conflist.plugins, paths):
                    out = self._exec(path, self._env("ADD", rt, rt.netns, rt.args),
                                     self._stdin(conflist, plugin, ver, rt.capability_args, prev))
                    if not out.strip():
                        raise PluginError(plugin.type, 999, "ADD succeeded but printed no result",
                                          command="ADD")
                    try:
                        prev = cniresult.normalize(out, ver)
                    except Exception as e:
                        raise PluginError(plugin.type, 999, f"invalid result: {e}",
                                          command="ADD") from None
            except BaseException:
                try:
                    self._delete(conflist, rt)
                except Exception as cleanup:  # report the ADD failure, log the cleanup one
                    log.error("DEL after failed ADD of %s on %s also failed: %s",
                              rt.container_id, name, cleanup)
                raise
            intent.result = cniresult.render(prev, ver)
            self.cache.save(intent)
            return intent.result

    def delete(self, conflist, rt):
        """Run DEL in reverse; idempotent, works without a cache entry."""
        rt.validate()
        with self.locks.attachment(conflist.name, rt.container_id, rt.ifname), \
                self._host(exclusive=self.serialize):
            self._delete(conflist, rt)

    def _delete(self, conflist, rt):
        name = conflist.name
        entry = self.cache.load(name, rt.container_id, rt.ifname)
        conf, args, caps, netns, prev = conflist, rt.args, rt.capability_args, rt.netns, None
        if entry is not None:
            try:
                conf = cniconfig.conflist_from_bytes(entry.config, "cached config")
            except ConfigError as e:
                log.warning("cached config of %s unusable (%s); using the given one",
                            rt.container_id, e)
            args, caps = entry.cni_args, entry.capability_args
            netns = rt.netns or entry.netns
            prev = entry.result
        ver = self.select_version(conf)
        prev_c = None
        if prev is not None and cniversion.at_least(ver, "0.4.0"):
            try:
                prev_c = cniresult.normalize(prev, ver)
            except Exception as e:
                log.warning("cached result of %s unusable (%s); DEL without it",
                            rt.container_id, e)
        paths = self.plugin_paths(conf)
        for plugin, path in reversed(list(zip(conf.plugins, paths))):
            self._exec(path, self._env("DEL", rt, netns, args),
                       self._stdin(conf, plugin, ver, caps, prev_c))
        self.cache.delete(name, rt.container_id, rt.ifname)

    def check(self, conflist, rt):
        """Run CHECK forward with the cached result; a no-op below 0.4.0 or with disableCheck."""
        rt.validate()
        with self.locks.attachment(conflist.name, rt.container_id, rt.ifname), \
                self._host(exclusive=False):
            entry = self.cache.load(conflist.name, rt.container_id, rt.ifname)
            if entry is None or entry.result is None:
                raise NotAddedError(
                    f"container {rt.container_id} has no interface {rt.ifname} on network "
                    f"{conflist.name}")
            ver = self.select_version(conflist)
            if conflist.disable_check or not cniversion.at_least(ver, "0.4.0"):
                return False
            prev = cniresult.normalize(entry.result, ver)
            for plugin, path in zip(conflist.plugins, self.plugin_paths(conflist)):
                self._exec(path, self._env("CHECK", rt, rt.netns or entry.netns, entry.cni_args),
                           self._stdin(conflist, plugin, ver, entry.capability_args, prev))
            return True

    def gc(self, conflist, valid_attachments):
        """DEL every cached attachment of the list not in `valid_attachments`.

        `valid_attachments` is an iterable of (container_id, ifname), or (an extension
        of libcni) a callable returning one, called once the exclusive lock is held: a
        caller that derives it from its own records then cannot miss an attachment an
        ADD made between its look and the DELs. Where the list runs at 1.1.0+, the GC
        verb follows, sent to every plugin even when one fails (as libcni; the first
        failure is raised once all have had it). Nothing at all with disableGC.
        Returns the (container_id, ifname) pairs that were deleted.
        """
        if conflist.disable_gc:
            return []  # as libcni: disableGC means no garbage collection at all
        removed, failures, gc_errors = [], [], []
        cached = [(e.container_id, e.ifname) for e in self.cache.entries(conflist.name)]
        # As ADD and DEL: the attachments' locks first, then the host lock. Every cached
        # one is locked: which are valid is only known under the exclusive lock.
        with self.locks.attachments([(conflist.name, c, i) for c, i in cached]), \
                self._host(exclusive=True):
            if callable(valid_attachments):
                valid_attachments = valid_attachments()
            valid = {(c, i) for c, i in valid_attachments}
            for key in cached:
                if key in valid:
                    continue
                entry = self.cache.load(conflist.name, *key)
                if entry is None:
                    continue  # DELeted before we held its lock
                rt = RuntimeConf.from_cache(entry)
                try:
                    self._delete(conflist, rt)
                    removed.append(key)
                except Exception as e:
                    failures.append(f"{entry.container_id}/{entry.ifname}: {e}")
            ver = self.select_version(conflist)
            if cniversion.at_least(ver, "1.1.0"):
                attachments = [{"containerID": c, "ifname": i} for c, i in sorted(valid)]
                for plugin, path in zip(conflist.plugins, self.plugin_paths(conflist)):
                    conf = json.loads(self._stdin(conflist, plugin, ver, {}, None))
                    conf["cni.dev/valid-attachments"] = attachments
                    conf["cni.dev/attachments"] = attachments  # the spec's first name of it
                    try:
                        self._exec(path, self._verb_env("GC"), json.dumps(conf).encode())
                    except PluginError as e:
                        gc_errors.append(e)
        if failures:
            log.warning("GC of %s left %d attachment(s): %s", conflist.name, len(failures),
                        "; ".join(failures))
        for e in gc_errors[1:]:
            log.warning("GC of %s: %s", conflist.name, e)
        if gc_errors:
            raise gc_errors[0]
        return removed

    def status(self, conflist):
        """STATUS of every plugin (1.1.0+); raises PluginError (codes 50/51) when not ready."""
        ver = self.select_version(conflist)
        if not cniversion.at_least(ver, "1.1.0"):
            return False
        for plugin, path in zip(conflist.plugins, self.plugin_paths(conflist)):
            self._exec(path, self._verb_env("STATUS"),
                       self._stdin(conflist, plugin, ver, {}, None))
        return True

    def _verb_env(self, command):
        """GC and STATUS concern no attachment: libcni sends the six variables all the
        same, empty but CNI_COMMAND and CNI_PATH."""
        env = base_environ()
        env.update(CNI_COMMAND=command, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="",
                   CNI_ARGS="", CNI_PATH=":".join(self.plugin_dirs))
        return env

    # -- the cache, as libcni exposes it (GetCachedAttachments, GetNetworkList
    # CachedConfig/Result): callers never touch its files or lock paths.

    def cached_attachments(self, network=None):
        """Every cached attachment (CacheEntry), optionally of one network only."""
        return self.cache.entries(network)

    def cached_attachment(self, network, container_id, ifname):
        """The cached attachment, or None (absent or unreadable)."""
        return self.cache.load(network, container_id, ifname)

    def has_attachment(self, network, container_id, ifname):
        """True if anything is cached for it, even an entry too corrupt to read: a DEL is due."""
        return self.cache.exists(network, container_id, ifname)

    def cached_config(self, network, container_id, ifname):
        """The list an attachment was added with, or None."""
        entry = self.cache.load(network, container_id, ifname)
        if entry is None:
            return None
        try:
            return cniconfig.conflist_from_bytes(entry.config, "cached config")
        except ConfigError:
            return None

    def cached_result(self, conflist, rt):
        entry = self.cache.load(conflist.name, rt.container_id, rt.ifname)
        return entry.result if entry else None

    def cache_age(self, network, container_id, ifname):
        """Seconds since the attachment's cache entry was written, or None if there is none."""
        try:
            return time.time() - os.stat(self.cache.path(network, container_id, ifname)).st_mtime
        except FileNotFoundError:
            return None

    def lock(self, scope, key):
        """An exclusive lock, across processes, for a caller's key within a scope (e.g.
        "endpoint" and its id). Keys of one scope share a bounded set of lock files, so
        never hold two locks of one scope at once; two scopes nest fine."""
        return self.locks.bucket(scope, key)
