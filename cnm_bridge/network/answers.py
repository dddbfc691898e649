"""CNI results <-> Docker's answers, and what an endpoint hands CNI. Pure.

Results are read in their canonical (1.x) shape whatever version the list ran
at (`cni_runner.canonical_result`), so a 0.2.0 list's `ip4` reads like `ips`.
"""

import hashlib
import ipaddress

from cni_runner import canonical_result

from ..errors import UnsupportedOption
from .conflists import IPS_IPAMS

MAIN_TABLE = 254  # RT_TABLE_MAIN


def canonical(result):
    return canonical_result(result) if result else {"interfaces": [], "ips": [], "routes": []}


def container_ips(result, ifname=None):
    """The result's addresses on the container interface, as ip_interface objects."""
    res = canonical(result)
    ifaces = res.get("interfaces") or []
    wanted = {i for i, f in enumerate(ifaces)
              if f.get("sandbox") and (ifname is None or f.get("name") == ifname)}
    out = []
    for ipc in res.get("ips") or []:
        idx = ipc.get("interface")
        if idx is None or idx in wanted or not wanted:
            out.append(ipaddress.ip_interface(ipc["address"]))
    return out


def container_mac(result, ifname):
    """The MAC the result reports for the container interface, or None."""
    for f in canonical(result).get("interfaces") or []:
        if f.get("name") == ifname and f.get("sandbox") and f.get("mac"):
            return f["mac"].lower()
    return None


def mac_for(address, address6):
    """The MAC an endpoint gets when the user gave none: it follows the address, as on
    Docker's bridge (02:42 and the four IPv4 bytes), so a restarted container that keeps
    its address keeps its MAC and its peers' neighbour caches stay right. Without IPv4,
    02:42 and four bytes of a hash of the IPv6 address: as stable, and not the v6
    address's own low bytes, which many addresses of one /64 share."""
    if address is not None:
        tail = address.ip.packed
    elif address6 is not None:
        tail = hashlib.sha256(address6.ip.packed).digest()[:4]
    else:
        return ""
    return "02:42:" + ":".join(f"{b:02x}" for b in tail)


def cni_args(mac):
    """CNI_ARGS of an endpoint: the MAC (bridge, macvlan and tuning read MAC=)."""
    return [("MAC", mac)] if mac else []


def capability_args(ipam_type, addresses, mac):
    """runtimeConfig for the chain: Docker's addresses as `ips` (host-local, static) and
    the MAC as `mac`, each reaching only the plugins that declare the capability.

    Not CNI_ARGS IP=: the reference plugins parse IP= as one address (dual stack
    fails) and bridge itself rejects a list there, DEL included.
    """
    caps = {}
    addrs = [str(a) for a in addresses if a is not None]
    if addrs and ipam_type in IPS_IPAMS:
        caps["ips"] = addrs
    if mac:
        caps["mac"] = mac
    return caps


def _gateways(res):
    gws = {}
    for ipc in res.get("ips") or []:
        if ipc.get("gateway"):
            ver = ipaddress.ip_interface(ipc["address"]).version
            gws.setdefault(ver, ipc["gateway"])
    return gws


def _main_table_routes(routes):
    """The result's routes that Join can carry. CNI 1.1 routes may name a `table`,
    `priority`, `mtu`, `advmss` and `scope`; Join's StaticRoutes (and Gateway) have none,
    and Docker installs them all in the main table at one metric. So a route of another
    table (sbr's, a VRF's) is left out (in the main one it would take traffic its rule
    never sent there); of routes to one destination the lowest priority is kept (a second
    at the same metric is "file exists" to Docker); the other fields are dropped (they
    stay in the cached result)."""
    best = {}
    for route in routes or []:
        if route.get("table") not in (None, 0, MAIN_TABLE):
            continue
        dst = ipaddress.ip_network(route["dst"], strict=False)
        priority = route.get("priority") or 0
        if dst not in best or priority < best[dst][0]:
            best[dst] = (priority, route)
    return [route for _, route in best.values()]


def _routed(res):
    """True when the container's peers on the subnet are reached through the host, not
    on the link: the container interface's one host-side peer is listed right before it
    with no bridge before that (ptp: [host veth, container]; bridge: [bridge, host veth,
    container]; macvlan, ipvlan, host-device: the container's alone). Plugins that come
    later in a chain (bandwidth's ifb) append after it, so only what precedes it counts.

    Read from the result rather than the plugin's name, so a user's ptp-like plugin is
    handled too. (A result address narrower than Docker's pool, the other sign, never
    reaches a handoff: check_addresses refuses it.)"""
    ifaces = res.get("interfaces") or []
    for idx, iface in enumerate(ifaces):
        if iface.get("sandbox"):
            return sum(1 for f in ifaces[:idx] if not f.get("sandbox")) == 1
    return False


def _subnet_via_gateway(res):
    """Routes that send a routed (ptp) container's traffic for its own subnet to the
    gateway, the host-side veth, which answers ARP/ND for it.

    ptp itself deletes the connected route of the address it sets and routes the subnet
    via the gateway; in a handoff Docker sets the address again (with the pool's prefix,
    which makes the kernel add that connected route back, so peers are ARPed for and
    nobody answers). A route for the same prefix via the gateway would collide with the
    kernel's ("file exists"): the subnet's two halves are more specific and win. The
    gateway itself gets a connected host route: Docker sets the default route only where
    the route to the gateway has no next hop ("direct route for the gateway ... could not
    be found"), and the half holding it would give it one."""
    ifaces = res.get("interfaces") or []
    out = []
    for ipc in res.get("ips") or []:
        idx = ipc.get("interface")
        if idx is not None and not (0 <= idx < len(ifaces) and ifaces[idx].get("sandbox")):
            continue  # an address of a host-side interface
        gw = ipc.get("gateway")
        net = ipaddress.ip_interface(ipc["address"]).network
        if not gw or net.prefixlen == net.max_prefixlen:
            continue
        on_link = ipaddress.ip_network(gw)
        out.append({"Destination": str(on_link), "RouteType": 1})
        for half in net.subnets(prefixlen_diff=1):
            if half != on_link:  # a /31's half can be the gateway's own route
                out.append({"Destination": str(half), "RouteType": 0, "NextHop": gw})
    return out


def join_answer(result, srcname=None, internal=False):
    """CNI result -> Join answer.

    {"InterfaceName":{"SrcName","DstPrefix"},"Gateway","GatewayIPv6","StaticRoutes":[...]}
    InterfaceName only for a handed-off link (srcname); "DisableGatewayService": true
    when CNI set no IPv4 default route.
    """
    res = canonical(result)
    gws = _gateways(res)
    subnets = {a.network for a in container_ips(res)}
    answer = {"InterfaceName": {"SrcName": srcname, "DstPrefix": "eth"}} if srcname else {}
    static = []
    for route in _main_table_routes(res.get("routes")):
        dst = ipaddress.ip_network(route["dst"], strict=False)
        gw = route.get("gw")
        if dst.prefixlen == 0:
            gw = gw or gws.get(dst.version)
            if gw and not internal:
                answer["Gateway" if dst.version == 4 else "GatewayIPv6"] = gw
            continue
        if dst in subnets:
            continue  # the kernel adds the connected route with the address
        if gw:
            static.append({"Destination": str(dst), "RouteType": 0, "NextHop": gw})
        else:
            static.append({"Destination": str(dst), "RouteType": 1})
    if srcname and _routed(res):
        static.extend(_subnet_via_gateway(res))
    if static and srcname:
        # Docker installs them only on an interface it moved in; in the container's own
        # netns CNI has installed them already.
        answer["StaticRoutes"] = static
    if "Gateway" not in answer:
        # Docker adds docker_gwbridge to a container whose endpoints give no IPv4
        # gateway (its check ignores IPv6).
        answer["DisableGatewayService"] = True
    return answer


def endpoint_answer(mac_given, mac):
    """CreateEndpoint answer: {"Interface": {"MacAddress"?}}.

    Docker decided the addresses (its IPAM, or pycni's IPAM driver) and refuses
    an answer that changes one it sent, or a MAC the user gave; a MAC it left
    empty is accepted and shown by `docker inspect`.
    """
    return {"Interface": {"MacAddress": mac} if mac and not mac_given else {}}


def check_addresses(conflist_name, wanted, result_ips):
    """Docker's addresses must be the ones CNI configured; else its view would lie."""
    have = {str(a) for a in result_ips}
    for want in wanted:
        if want is not None and str(want) not in have:
            raise UnsupportedOption(
                f"CNI network {conflist_name!r} configured {sorted(have) or 'no address'} "
                f"but Docker assigned {want}; its IPAM must accept the requested address "
                "(host-local, static) or the network must use --ipam-driver pycni")
