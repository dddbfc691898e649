"""The IPAM driver: Docker's address requests answered by a CNI IPAM plugin run alone.

`docker network create --ipam-driver pycni [--ipam-opt cni.network=NAME]`
makes CNI IPAM the source of truth. Each RequestAddress is one CNI ADD of the
IPAM plugin under a handle of its own; ReleaseAddress is its DEL. The network
driver then hands the address to its chain through `static`, so nothing
allocates twice.

With `cni.network=NAME` the pool is that conflist's IPAM, exactly: its ranges
(rangeStart/rangeEnd), gateway and dataDir, under the conflist's own network
name, so host-local keeps its files where any other CNI user of NAME looks.
"""

import hashlib
import ipaddress
import logging
import threading
import uuid

from cni_runner import CNIError, RuntimeConf, canonical_result, conflist_from_dict, load_by_name

from .. import names
from ..errors import DriverError, NotFound, UnsupportedOption
from ..host import routes
from ..state.records import Pool
from . import conflists
from .conflists import IPS_IPAMS
from .options import OPT_CNI_NETWORK

log = logging.getLogger(__name__)
LOCAL_SPACE = "PycniLocal"
GLOBAL_SPACE = "PycniGlobal"
GATEWAY_HANDLE = "gateway"


class Ipam:
    def __init__(self, settings, store, runtime, host):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.host = host
        self._replay_lock = threading.Lock()
        self._replayable = set()
        self._replayable_pools = set()
        self._pool_lock = threading.Lock()

    def capabilities(self):
        """Docker asks this when it (re)starts using the driver; replays follow.

        Replay lets Docker restore pools and addresses after a live-restore
        restart. Until the next GetCapabilities, an address already held may be
        asked for once more (the replay); any other request for it is a second
        container wanting a taken --ip, and fails. Likewise each pool is given back
        once to a request for its subnet; any other such request is another network's.
        """
        with self._replay_lock:
            self._replayable_pools = {pool.id for pool in self.store.pools()}
            self._replayable = {(pool.id, addr) for pool in self.store.pools()
                                for addr, handle in self.store.addresses(pool.id).items()
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
        name = req.options.get(OPT_CNI_NETWORK) or ""
        pool = self._named_pool(name, req) if name else self._own_pool(req)
        base = "pycni:" + hashlib.sha256(
            f"{req.address_space}|{pool.subnet}|{req.sub_pool}|{name}".encode()).hexdigest()[:24]
        # A pool per request: two networks with one subnet are two pools, and removing
        # one releases only its own addresses.
        # Under a lock: two requests at once would choose one id, and the second's
        # record would replace the first's.
        with self._pool_lock:
            ids = {p.id for p in self.store.pools()
                   if p.id == base or p.id.startswith(base + "-")}
            pool.id = self._replayed(ids)
            if pool.id is None:
                if req.pool is None and req.address_space != GLOBAL_SPACE:
                    self._check_docker_keeps_it(pool, bool(ids), name)
                pool.id = next(i for i in (base if n == 0 else f"{base}-{n}"
                                           for n in range(len(ids) + 1)) if i not in ids)
                self._check_overlap(ipaddress.ip_network(pool.subnet), pool.id)
                self.store.put_pool(pool)
        return {"PoolID": pool.id, "Pool": pool.subnet, "Data": {}}

    def _replayed(self, ids):
        with self._replay_lock:
            for pool_id in sorted(ids & self._replayable_pools):
                self._replayable_pools.discard(pool_id)
                return pool_id
        return None

    def _own_pool(self, req):
        if req.pool is None:
            raise UnsupportedOption(
                "the pycni IPAM driver needs a subnet: pass --subnet, or --ipam-opt "
                "cni.network=NAME naming a conflist whose IPAM has one")
        rng = {"subnet": str(req.pool)}
        if req.sub_pool is not None:
            rng["rangeStart"], rng["rangeEnd"] = _ends(req.sub_pool, req.pool)
        return Pool(id="", subnet=str(req.pool), v6=req.v6, range=rng)

    def _named_pool(self, name, req):
        try:
            conf = load_by_name(self.settings.conf_dir, name)
        except CNIError as e:
            raise DriverError(str(e)) from None
        ipam = conflists.main_ipam(conf.raw)
        if ipam is None:
            raise UnsupportedOption(f"CNI network {name!r} has no IPAM section")
        kind = ipam.get("type")
        if kind not in IPS_IPAMS:
            # dhcp leases belong to an interface in a netns; RequestAddress has neither.
            raise UnsupportedOption(
                f"CNI network {name!r} uses IPAM {kind!r}; the pycni IPAM driver "
                f"supports {', '.join(IPS_IPAMS)}")
        family = 6 if req.v6 else 4
        mine = _first_subnet(ipam, family)
        if mine is None:
            raise UnsupportedOption(
                f"CNI network {name!r} has no IPv{family} subnet in its IPAM"
                + ("; create the network without --ipv6" if family == 6 else ""))
        if req.pool is not None and req.pool != mine:
            raise UnsupportedOption(
                f"subnet {req.pool} does not match CNI network {name!r}, whose IPAM uses "
                f"{mine}; create the network with --subnet {mine} or without --subnet")
        if req.sub_pool is not None:
            raise UnsupportedOption(
                f"--ip-range cannot be combined with --ipam-opt cni.network={name}: the "
                "conflist's IPAM decides the range (rangeStart/rangeEnd)")
        return Pool(id="", subnet=str(mine), v6=req.v6, kind=kind, cni_network=name,
                    ipam=ipam)

    def _check_docker_keeps_it(self, pool, held, name):
        """Without --subnet (in the local address space) Docker checks the pool against
        the host's on-link routes and, on an overlap, keeps it and asks again until
        another comes back (releasing what it kept once a request succeeds or fails).
        A named pool has one subnet: answering it twice in one create would loop dockerd
        forever, so the overlap Docker would find, or the same pool asked for while it
        is held, is refused with the flag that skips Docker's check."""
        subnet = ipaddress.ip_network(pool.subnet)
        fix = (f"create the network with --subnet {subnet} (with it Docker skips that "
               f"check and shares the subnet with {name!r}'s other users)")
        route = routes.overlapping(subnet, self.host.onlink_routes())
        if route is not None:
            raise UnsupportedOption(
                f"subnet {subnet} of CNI network {name!r} is already on this host (route "
                f"{route.network} on {route.device}: another runtime's bridge is up, or a "
                f"network of the host); without --subnet Docker would ask pycni for another "
                f"pool, and {name!r} has no other: {fix}")
        if held:
            raise UnsupportedOption(
                f"subnet {subnet} of CNI network {name!r} is already held by pycni (another "
                f"Docker network on {name!r}, or Docker asking again because the subnet is "
                f"in use on this host) and {name!r} has no other: {fix}")

    def _check_overlap(self, subnet, pool_id):
        for pool in self.store.pools():
            other = ipaddress.ip_network(pool.subnet)
            # The same subnet twice is allowed, as Docker allows it under a remote IPAM.
            if pool.id != pool_id and other.version == subnet.version and \
                    other.overlaps(subnet) and other != subnet:
                raise UnsupportedOption(
                    f"subnet {subnet} overlaps {other}, already used by another pycni network")

    def release_pool(self, req):
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            return {}
        for address, handle in self.store.addresses(req.pool_id).items():
            self._release(pool, address, handle)
        self.store.delete_pool(req.pool_id)
        return {}

    # -- addresses ------------------------------------------------------------

    def request_address(self, req):
        """-> {"Address": "10.0.0.2/24", "Data": {}}"""
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            raise NotFound(f"pool {req.pool_id} is not known to pycni")
        subnet = ipaddress.ip_network(pool.subnet)
        if req.address is not None and req.address not in subnet:
            raise UnsupportedOption(f"address {req.address} is not in subnet {subnet}")
        if req.gateway:
            return self._gateway(pool, subnet, req.address)
        if req.address is not None and self._held(pool, str(req.address)):
            with self._replay_lock:
                replay = (pool.id, str(req.address)) in self._replayable
                self._replayable.discard((pool.id, str(req.address)))
            if not replay:
                raise UnsupportedOption(f"address {req.address} is already in use")
            return {"Address": f"{req.address}/{subnet.prefixlen}", "Data": {}}
        static = pool.kind == "static"
        if static and req.address is None:
            raise UnsupportedOption(
                f"CNI network {pool.cni_network!r} uses static IPAM, which gives only the "
                "address asked for: run the container with --ip")
        handle = names.IPAM_HANDLE_PREFIX + uuid.uuid4().hex
        args = [("IP", str(req.address))] if req.address is not None and not static else []
        conflist = self._conflist(pool, f"{req.address}/{subnet.prefixlen}" if static else None)
        result = self.runtime.add(conflist, RuntimeConf(handle, "/dev/null", "eth0", args))
        ips = [ipaddress.ip_interface(a) for a in _addresses(result)]
        ips = [a for a in ips if a.ip in subnet]
        if not ips:
            self.runtime.delete(conflist, RuntimeConf(handle, "/dev/null", "eth0", args))
            raise DriverError(f"{pool.kind} returned no address of {subnet}")
        self.store.add_address(pool.id, str(ips[0].ip), handle)
        return {"Address": f"{ips[0].ip}/{subnet.prefixlen}", "Data": {}}

    def _held(self, pool, address):
        """Whether the store's row for an address stands for a live allocation. A row
        whose CNI attachment is gone (its DEL ran, the row's removal did not: a crash, a
        gc of orphans) holds nothing: it goes, and the address is free."""
        handle = self.store.get_address(pool.id, address)
        if handle is None:
            return False
        if handle == GATEWAY_HANDLE or self.runtime.has_attachment(self._cni_name(pool),
                                                                   handle, "eth0"):
            return True
        log.warning("pool %s: address %s had a record but no CNI attachment; freed",
                    pool.id, address)
        self.store.delete_address(pool.id, address)
        return False

    def _gateway(self, pool, subnet, asked):
        """The gateway's address: the conflist's (named pools), else --gateway or the
        subnet's first host; recorded, and kept out of host-local's hands."""
        mine = _gateway_of(pool.ipam, subnet) if pool.cni_network else None
        if mine is not None and asked is not None and asked != mine:
            raise UnsupportedOption(
                f"gateway {asked} does not match CNI network {pool.cni_network!r}, whose "
                f"gateway for {subnet} is {mine}; create the network with --gateway {mine} "
                "or without --gateway")
        gw = mine or asked or (subnet.network_address + 1)
        pool.gateway = str(gw)
        self.store.put_pool(pool)
        self.store.add_address(pool.id, str(gw), GATEWAY_HANDLE)
        return {"Address": f"{gw}/{subnet.prefixlen}", "Data": {}}

    def release_address(self, req):
        pool = self.store.get_pool(req.pool_id)
        if pool is None:
            return {}
        handle = self.store.get_address(req.pool_id, str(req.address))
        if handle is not None:
            self._release(pool, str(req.address), handle)
        return {}

    def _release(self, pool, address, handle):
        if handle != GATEWAY_HANDLE:
            cidr = f"{address}/{ipaddress.ip_network(pool.subnet).prefixlen}"
            self.runtime.delete(self._conflist(pool, cidr), RuntimeConf(handle, "/dev/null",
                                                                        "eth0"))
        self.store.delete_address(pool.id, address)

    @staticmethod
    def _cni_name(pool):
        return pool.cni_network or names.ipam_network_name(pool.id)

    def _conflist(self, pool, static_address=None):
        """A one-plugin list: the IPAM plugin alone, as Docker's address authority.
        (Run alone, an IPAM plugin still reads its settings from the "ipam" key.)"""
        if pool.kind == "static":
            entry = {"address": static_address}
            if pool.gateway:
                entry["gateway"] = pool.gateway
            ipam = {"type": "static", "addresses": [entry]}
        elif pool.cni_network:
            ipam = _family_only(pool.ipam, ipaddress.ip_network(pool.subnet))
        else:
            rng = dict(pool.range)
            if pool.gateway:
                rng["gateway"] = pool.gateway
            ipam = {"type": "host-local", "ranges": [[rng]], "dataDir": self.settings.ipam_dir}
        return conflist_from_dict({"cniVersion": "1.0.0", "name": self._cni_name(pool),
                                   "plugins": [{"type": ipam["type"], "ipam": ipam}]})


def _family_only(ipam, subnet):
    """A conflist's host-local section with only the range sets of this pool's subnet:
    Docker asks for one address per pool (family), host-local gives one per range set."""
    out = {k: v for k, v in ipam.items() if k not in ("subnet", "rangeStart", "rangeEnd",
                                                      "gateway", "ranges")}
    sets = []
    for rset in ipam.get("ranges") or []:
        kept = [r for r in rset if isinstance(r, dict) and r.get("subnet")
                and ipaddress.ip_network(r["subnet"], strict=False) == subnet]
        if kept:
            sets.append(kept)
    if ipam.get("subnet") and ipaddress.ip_network(ipam["subnet"], strict=False) == subnet:
        sets.append([{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway")
                      if ipam.get(k)}])
    out["ranges"] = sets[:1]
    return out


def _gateway_of(ipam, subnet):
    for net, gw, _, _ in conflists.ipam_ranges(ipam or {}):
        if net == subnet:
            return ipaddress.ip_address(conflists.default_gateway(net, gw))
    return None


def _addresses(result):
    return [i["address"] for i in canonical_result(result).get("ips", [])]


def _first_subnet(ipam, family):
    """The first subnet of that family in an IPAM section: host-local's, or static's."""
    for net, _ in conflists.ipam_subnets(ipam or {}):
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
