"""The IPAM driver: Docker's address requests answered by a CNI IPAM plugin run alone.

`docker network create --ipam-driver pycni [--ipam-opt cni.network=NAME]`
makes CNI IPAM (host-local) the source of truth. Each RequestAddress is one
CNI ADD of the IPAM plugin under a handle of its own; ReleaseAddress is its DEL.
The network driver then hands the address to its chain through `static`, so
nothing allocates twice.
"""

import hashlib
import ipaddress
import logging
import threading
import uuid

from cni_runner import CNIError, RuntimeConf, conflist_from_dict, load_by_name

from . import translate
from .errors import DriverError, NotFound, UnsupportedOption

log = logging.getLogger(__name__)
LOCAL_SPACE = "PycniLocal"
GLOBAL_SPACE = "PycniGlobal"
OPT_CNI_NETWORK = "cni.network"
GATEWAY_HANDLE = "gateway"
IPAM_TYPES = ("host-local", "static")


class Ipam:
    def __init__(self, settings, store, runtime):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self._replay_lock = threading.Lock()
        self._replayable = set()

    def capabilities(self):
        """Docker asks this when it (re)starts using the driver; replays follow.

        Replay lets Docker restore pools and addresses after a live-restore
        restart. Until the next GetCapabilities, an address already held may be
        asked for once more (the replay); any other request for it is a second
        container wanting a taken --ip, and fails.
        """
        with self._replay_lock:
            self._replayable = {(pool_id, addr) for pool_id in self.store.pools()
                                for addr, handle in self.store.addresses(pool_id).items()
                                if handle != GATEWAY_HANDLE}
        return {"RequiresMACAddress": False, "RequiresRequestReplay": True}

    def default_address_spaces(self):
        return {"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE}

    # -- pools ----------------------------------------------------------------

    def request_pool(self, req):
        """-> {"PoolID","Pool","Data"}"""
        unknown = sorted(set(req.options) - {OPT_CNI_NETWORK})
        if unknown:
            raise UnsupportedOption(f"unsupported --ipam-opt option(s): {', '.join(unknown)}")
        base = {}
        name = req.options.get(OPT_CNI_NETWORK)
        if name:
            base = self._named_ipam(name, req)
        subnet = req.pool or _first_subnet(base, 6 if req.v6 else 4)
        itype = base.get("type", "host-local")
        if subnet is None:
            raise UnsupportedOption(
                "the pycni IPAM driver needs a subnet: pass --subnet, or --ipam-opt "
                "cni.network=NAME naming a conflist whose host-local IPAM has one")
        rng = {"subnet": str(subnet)}
        if req.sub_pool is not None:
            rng["rangeStart"], rng["rangeEnd"] = _ends(req.sub_pool, subnet)
        pool_id = "pycni:" + hashlib.sha256(
            f"{req.address_space}|{subnet}|{req.sub_pool}|{name}".encode()).hexdigest()[:24]
        existing = self.store.get_pool(pool_id)
        if existing is None:
            data = {"subnet": str(subnet), "range": rng, "base": base, "cni_network": name or "",
                    "v6": req.v6, "type": itype}
            self._check_overlap(subnet, pool_id)
            self.store.add_pool(pool_id, data)
        return {"PoolID": pool_id, "Pool": str(subnet), "Data": {}}

    def _named_ipam(self, name, req):
        try:
            conf = load_by_name(self.settings.conf_dir, name)
        except CNIError as e:
            raise DriverError(str(e)) from None
        ipam = translate.main_ipam(conf.raw)
        if ipam is None:
            raise UnsupportedOption(f"CNI network {name!r} has no IPAM section")
        if ipam.get("type") not in IPAM_TYPES:
            # dhcp leases belong to an interface in a netns; RequestAddress has neither.
            raise UnsupportedOption(
                f"CNI network {name!r} uses IPAM {ipam.get('type')!r}; the pycni IPAM driver "
                f"supports {', '.join(IPAM_TYPES)}")
        family = 6 if req.v6 else 4
        mine = _first_subnet(ipam, family)
        if req.pool is not None and mine is not None and req.pool != mine:
            raise UnsupportedOption(
                f"subnet {req.pool} does not match CNI network {name!r}, whose IPAM uses {mine}")
        return ipam

    def _check_overlap(self, subnet, pool_id):
        for pid, data in self.store.pools().items():
            other = ipaddress.ip_network(data["subnet"])
            if pid != pool_id and other.version == subnet.version and other.overlaps(subnet):
                raise UnsupportedOption(
                    f"subnet {subnet} overlaps {other}, already used by another pycni network")

    def release_pool(self, req):
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            return {}
        for address, handle in self.store.addresses(req.pool_id).items():
            self._release(req.pool_id, pool, address, handle)
        self.store.delete_pool(req.pool_id)
        return {}

    # -- addresses ------------------------------------------------------------

    def request_address(self, req):
        """-> {"Address": "10.0.0.2/24", "Data": {}}"""
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            raise NotFound(f"pool {req.pool_id} is not known to pycni")
        subnet = ipaddress.ip_network(pool["subnet"])
        if req.address is not None and req.address not in subnet:
            raise UnsupportedOption(f"address {req.address} is not in subnet {subnet}")
        if req.gateway:
            gw = req.address or next(subnet.hosts())
            pool["gateway"] = str(gw)
            self.store.add_pool(req.pool_id, pool)
            self.store.add_address(req.pool_id, str(gw), GATEWAY_HANDLE)
            return {"Address": f"{gw}/{subnet.prefixlen}", "Data": {}}
        if req.address is not None and self.store.get_address(req.pool_id, str(req.address)):
            with self._replay_lock:
                replay = (req.pool_id, str(req.address)) in self._replayable
                self._replayable.discard((req.pool_id, str(req.address)))
            if not replay:
                raise UnsupportedOption(f"address {req.address} is already in use")
            return {"Address": f"{req.address}/{subnet.prefixlen}", "Data": {}}
        static = pool.get("type") == "static"
        if static and req.address is None:
            raise UnsupportedOption(
                f"CNI network {pool.get('cni_network')!r} uses static IPAM, which gives only the "
                "address asked for: run the container with --ip")
        handle = "pycni-ipam-" + uuid.uuid4().hex
        args = [("IP", str(req.address))] if req.address is not None and not static else []
        conflist = self._conflist(req.pool_id, pool,
                                  f"{req.address}/{subnet.prefixlen}" if static else None)
        result = self.runtime.add(conflist, RuntimeConf(handle, "/dev/null", "eth0", args))
        ips = [ipaddress.ip_interface(i["address"]) for i in result.get("ips", [])]
        if not ips:
            raise DriverError(f"host-local returned no address for pool {subnet}")
        self.store.add_address(req.pool_id, str(ips[0].ip), handle)
        return {"Address": f"{ips[0].ip}/{subnet.prefixlen}", "Data": {}}

    def release_address(self, req):
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            return {}
        handle = self.store.get_address(req.pool_id, str(req.address))
        if handle is not None:
            self._release(req.pool_id, pool, str(req.address), handle)
        return {}

    def _release(self, pool_id, pool, address, handle):
        if handle != GATEWAY_HANDLE:
            cidr = f"{address}/{ipaddress.ip_network(pool['subnet']).prefixlen}"
            self.runtime.delete(self._conflist(pool_id, pool, cidr),
                                RuntimeConf(handle, "/dev/null", "eth0"))
        self.store.delete_address(pool_id, address)

    def _conflist(self, pool_id, pool, static_address=None):
        """A one-plugin list: the IPAM plugin alone, as Docker's address authority."""
        name = "pycni-ipam-" + pool_id.split(":", 1)[1][:16]
        if pool.get("type") == "static":
            entry = {"address": static_address}
            if pool.get("gateway"):
                entry["gateway"] = pool["gateway"]
            plugin = {"type": "static", "ipam": {"type": "static", "addresses": [entry]}}
            return conflist_from_dict({"cniVersion": "1.0.0", "name": name,
                                       "plugins": [plugin]})
        rng = dict(pool["range"])
        if pool.get("gateway"):
            rng["gateway"] = pool["gateway"]
        ipam = {k: v for k, v in (pool.get("base") or {}).items()
                if k not in ("ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes")}
        ipam.update(type="host-local", ranges=[[rng]])
        ipam.setdefault("dataDir", self.settings.ipam_dir)
        # Run alone, the IPAM plugin still reads its settings from the "ipam" key.
        plugin = {"type": "host-local", "ipam": ipam}
        return conflist_from_dict({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]})


def _first_subnet(ipam, family):
    """The first subnet of that family in an IPAM section: host-local's, or static's."""
    for net, _ in translate.ipam_subnets(ipam or {}):
        if net.version == family:
            return net
    for a in (ipam or {}).get("addresses") or []:  # static
        if isinstance(a, dict) and a.get("address"):
            net = ipaddress.ip_interface(a["address"]).network
            if net.version == family:
                return net
    return None


def _ends(sub, pool):
    """First and last usable address of --ip-range inside its pool: only the pool's own
    network and broadcast addresses are excluded, as Docker's IPAM does."""
    first, last = sub.network_address, sub.broadcast_address
    if first == pool.network_address:
        first += 1
    if pool.version == 4 and last == pool.broadcast_address:
        last -= 1
    return str(first), str(last)
