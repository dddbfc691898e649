"""The result cache, in libcni's on-disk format.

`<root>/results/<network>-<containerid>-<ifname>` holds
{"kind":"cniCacheV1","containerId","config":<base64 list>,"ifName","networkName",
 "netns","cniArgs":[[k,v]...],"capabilityArgs":{...},"result":{...}}.
Writes are atomic (temp file, rename) so a crash of the writer never leaves a
torn entry that would make every later DEL fail. There is no fsync, as in libcni
and host-local: it cost a millisecond per write here, and the power cut it would
guard against also takes every netns and link the entries describe.
"""

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

KIND = "cniCacheV1"


@dataclass
class CacheEntry:
    container_id: str
    ifname: str
    network_name: str
    config: bytes
    netns: str = ""
    cni_args: list = field(default_factory=list)
    capability_args: dict = field(default_factory=dict)
    result: dict = None

    def to_json(self):
        doc = {
            "kind": KIND,
            "containerId": self.container_id,
            "config": base64.b64encode(self.config).decode(),
            "ifName": self.ifname,
            "networkName": self.network_name,
            "netns": self.netns,
            "cniArgs": [list(p) for p in self.cni_args],
            "capabilityArgs": self.capability_args,
        }
        if self.result is not None:
            doc["result"] = self.result
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data):
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError("not a cniCacheV1 entry")
        # Check every field's type here: a wrong one would otherwise surface later
        # as a TypeError deep inside DEL, which must tolerate a corrupt cache.
        for key in ("containerId", "ifName", "networkName"):
            if not isinstance(doc[key], str):
                raise ValueError(f"{key} must be a string")
        if not isinstance(doc.get("config", ""), str) or not isinstance(doc.get("netns", ""), str):
            raise ValueError("config and netns must be strings")
        cni_args = doc.get("cniArgs") or []
        if not isinstance(cni_args, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in cni_args):
            raise ValueError("cniArgs must be a list of [key, value] string pairs")
        caps = doc.get("capabilityArgs") or {}
        if not isinstance(caps, dict):
            raise ValueError("capabilityArgs must be an object")
        result = doc.get("result")
        if result is not None and not isinstance(result, dict):
            raise ValueError("result must be an object")
        return cls(
            container_id=doc["containerId"],
            ifname=doc["ifName"],
            network_name=doc["networkName"],
            config=base64.b64decode(doc.get("config", ""), validate=True),
            netns=doc.get("netns", ""),
            cni_args=[tuple(p) for p in cni_args],
            capability_args=caps,
            result=result,
        )


class ResultCache:
    def __init__(self, root):
        self.root = root
        self.dir = os.path.join(root, "results")
        self._dir_ready = False

    def path(self, network, container_id, ifname):
        return os.path.join(self.dir, f"{network}-{container_id}-{ifname}")

    def _ensure_dir(self):
        # Make private only what is ours: a root that already exists may be a
        # shared dir (the CLI defaults to /var/lib/cni, a caller may pass /tmp).
        if not os.path.isdir(self.root):
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.chmod(self.root, 0o700)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def save(self, entry):
        final = self.path(entry.network_name, entry.container_id, entry.ifname)
        if not self._dir_ready:  # once per instance: two syscalls less per save
            self._ensure_dir()
            self._dir_ready = True
        # A name no other writer uses (process and thread), made 0600 from the start.
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}-{threading.get_ident()}")
        data = entry.to_json()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileNotFoundError:  # the dir was removed under us
                self._ensure_dir()
                fd = os.open(tmp, flags, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def load(self, network, container_id, ifname):
        """The entry, or None if absent. A corrupt entry is reported and treated as absent."""
        path = self.path(network, container_id, ifname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:  # a directory or unreadable file in its place: corrupt
            log.warning("unreadable CNI cache entry %s: %s", path, e)
            return None
        try:
            return CacheEntry.from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("corrupt CNI cache entry %s: %s", path, e)
            return None

    def exists(self, network, container_id, ifname):
        return os.path.exists(self.path(network, container_id, ifname))

    def delete(self, network, container_id, ifname):
        try:
            os.unlink(self.path(network, container_id, ifname))
        except FileNotFoundError:
            pass

    def entries(self, network=None):
        """Every readable entry, optionally of one network."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    entry = CacheEntry.from_json(f.read())
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if network is None or entry.network_name == network:
                out.append(entry)
        return out
