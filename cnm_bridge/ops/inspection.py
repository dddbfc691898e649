"""`pycni inspect NETWORK` and `pycni check CONTAINER`: what pycni runs for a network, and
whether CNI still agrees with a live container.

Both read pycni's store through the composition root and ask dockerd (DockerAPI)
only to turn Docker's names into ids; neither runs inside the server.
"""

from ..network import conflists


class LookupFailed(Exception):
    """The network or container named is not one pycni serves."""


def find_network(store, docker, ref):
    """A spec by Docker network name or id (or its prefix), or by CNI network name."""
    specs = store.networks()
    wanted = ref
    if docker is not None:
        try:
            info = docker.network(ref)
        except Exception:
            info = None
        if info:
            wanted = info["Id"]
    for spec in specs:
        if spec.id == wanted or spec.cni_name == ref:
            return spec
    prefixed = [s for s in specs if s.id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise LookupFailed(f"no pycni network {ref!r}" + (
        f" ({len(prefixed)} match that prefix)" if prefixed else ""))


def describe_network(spec, docker_name=""):
    """What `pycni inspect` shows: the lists as run, and what pycni changed and why."""
    changes = []
    if spec.generated:
        changes.append("generated from Docker's options (no file in the conf dir)")
    ipam = conflists.main_ipam(spec.conflist) or {}
    if ipam.get("type") in conflists.IPS_IPAMS:
        changes.append("capabilities.ips added to the IPAM plugin: Docker's addresses reach "
                       f"{ipam['type']} as runtimeConfig.ips")
    if spec.ports_list is not None:
        changes.append("port plugins (portmap) run on their own list "
                       f"{spec.ports_list['name']!r}, only when Docker publishes ports")
    if spec.static_ipam:
        changes.append("IPAM replaced by static per endpoint, with its addresses and Docker's "
                       "gateways: " + ("pycni's IPAM driver" if spec.ipam == "pycni" else
                                       "Docker's IPAM") + " allocated them already")
    if spec.direct_list != spec.endpoint_list:
        changes.append("tuning (capability mac) appended when CNI runs in the container's own "
                       "netns: no plugin of the list sets the MAC Docker shows")
    if spec.forward:
        changes.append("forwarding ACCEPTs per network (chain PYCNI-FORWARD): Docker sets "
                       "FORWARD's policy to DROP")
    if spec.isolate:
        changes.append("isolated from other bridge networks (mangle PYCNI-ISOLATION)")
    if spec.masquerade:
        changes.append("masquerade as one rule per subnet, not the bridge plugin's per container")
    if spec.lost_settings:
        changes.append("settings that only hold in the container's own netns: "
                       + "; ".join(spec.lost_settings)
                       + ("" if not spec.allow_loss else " (dropped where handed over)"))
    return {"Network": docker_name, "Id": spec.id, "CNINetwork": spec.cni_name,
            "Mode": spec.mode, "IPAM": spec.ipam, "Subnets": list(spec.subnets),
            "Bridge": spec.bridge, "Attach": spec.attach, "Conflist": spec.conflist,
            "EndpointList": spec.endpoint_list, "DirectList": spec.direct_list,
            "PortsList": spec.ports_list, "Changes": changes}


def container_endpoints(docker, container):
    """[(docker network name, endpoint id)] of a container, from dockerd."""
    info = docker.container(container)
    if info is None:
        raise LookupFailed(f"no such container: {container}")
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    return [(name, n.get("EndpointID")) for name, n in sorted(nets.items()) if n.get("EndpointID")]


def check_container(graph, docker, container):
    """[{"Network","Endpoint","Mode","Interface","Result","Detail"}] for the container's pycni
    endpoints; Result is "ok", "failed" or "not checked"."""
    rows = []
    for net_name, eid in container_endpoints(docker, container):
        ep = graph.store.get_endpoint(eid)
        if ep is None:
            continue  # another driver's network
        spec = graph.store.get_network(ep.network_id)
        ok, why = graph.attachments.check(spec, ep)
        rows.append({"Network": net_name, "Endpoint": eid[:12], "Mode": ep.mode,
                     "Interface": ep.ifname,
                     "Result": {True: "ok", False: "failed", None: "not checked"}[ok],
                     "Detail": why})
    if not rows:
        raise LookupFailed(f"container {container} has no endpoint on a pycni network")
    return rows
