"""Docker's calls, as the plugin API would parse them, for the Docker side's unit tests."""

import secrets

from cnm_bridge.docker import protocol as p


def hexid():
    return secrets.token_hex(32)


def create_network(subnet="10.50.0.0/24", gateway="10.50.0.1", options=None, v6=None,
                   internal=False, space="LocalDefault", ipv4=True, nid=None):
    body = {"NetworkID": nid or hexid(),
            "Options": {"com.docker.network.generic": options or {},
                        "com.docker.network.enable_ipv6": v6 is not None,
                        "com.docker.network.internal": internal},
            "IPv4Data": [], "IPv6Data": []}
    if ipv4:
        entry = {"AddressSpace": space, "Pool": subnet}
        if gateway:
            entry["Gateway"] = f"{gateway}/{subnet.split('/')[1]}"
        body["IPv4Data"].append(entry)
    else:
        body["Options"]["com.docker.network.enable_ipv4"] = False
    if v6 is not None:
        body["IPv6Data"].append({"AddressSpace": space, "Pool": v6[0],
                                 "Gateway": f"{v6[1]}/{v6[0].split('/')[1]}"})
    return p.parse_create_network(body)


def create_endpoint(nid, address="10.50.0.5/24", address6="", mac="", options=None, eid=None):
    return p.parse_create_endpoint({
        "NetworkID": nid, "EndpointID": eid or hexid(),
        "Interface": {"Address": address, "AddressIPv6": address6, "MacAddress": mac},
        "Options": options or {}})


def join(nid, eid, sandbox_key="/var/run/docker/netns/notyet"):
    return p.parse_join({"NetworkID": nid, "EndpointID": eid, "SandboxKey": sandbox_key})


def ref(nid, eid=None):
    if eid is None:
        return p.parse_network_ref({"NetworkID": nid})
    return p.parse_endpoint_ref({"NetworkID": nid, "EndpointID": eid})


def connectivity(nid, eid, *bindings):
    """bindings: (proto number, container port, host port[, host ip[, host port end]])"""
    portmap = []
    for b in bindings:
        proto, port, host_port = b[:3]
        portmap.append({"Proto": proto, "Port": port, "HostPort": host_port,
                        "HostIP": b[3] if len(b) > 3 else "",
                        "HostPortEnd": b[4] if len(b) > 4 else host_port})
    return p.parse_connectivity({"NetworkID": nid, "EndpointID": eid,
                                 "Options": {"com.docker.network.portmap": portmap}})


def run(driver, nid, address="10.50.0.5/24", sandbox_key="/var/run/docker/netns/notyet", **kw):
    """CreateEndpoint + Join, as `docker run` sends them. -> (eid, create answer, join answer)"""
    req = create_endpoint(nid, address, **kw)
    created = driver.create_endpoint(req)
    joined = driver.join(join(nid, req.endpoint_id, sandbox_key))
    return req.endpoint_id, created, joined


V11 = ["0.4.0", "1.0.0", "1.1.0"]  # VERSION answers of plugins that speak CNI 1.1


def named_network(side, name="lan11", version="1.1.0", plugins=None):
    """`docker network create -d pycni -o cni.network=NAME` of a conflist written first
    (bridge with host-local on Docker's 10.50.0.0/24, then portmap). -> the request"""
    side.cni.write_conf(f"10-{name}.conflist", {
        "cniVersion": version, "name": name,
        "plugins": plugins or [
            {"type": "bridge", "bridge": "br-" + name,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.50.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]})
    req = create_network(options={"cni.network": name})
    side.driver.create_network(req)
    return req
