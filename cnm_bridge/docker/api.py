"""The plugin HTTP API: routes, one per protocol call, and the one error handler.

Each handler parses the body into a typed request, calls one operation and
answers. Docker sends no Content-Type, so bodies are read raw, never through
request.get_json().
"""

import logging
import time

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException, InternalServerError

from cni_runner import CNIError, deadline

from ..errors import DriverError, HostError, explain_host_trouble
from . import protocol as p

log = logging.getLogger(__name__)
IMPLEMENTS = ["NetworkDriver", "IpamDriver"]


def create_app(driver, ipam, host, runtimes, call_deadline=None):
    """`runtimes`: the CNI runtimes whose plugin exec time the timing headers report.
    `call_deadline`: seconds each call may take (dockerd gives up on a plugin's call after
    30 s): plugin runs and waits end by then, with pycni's own error."""
    app = Flask("pycni")

    def body():
        return p.load_body(request.get_data(cache=False))

    def route(fn):
        """Register fn under the protocol method its name spells (Plugin_Activate -> /Plugin.Activate)."""
        path = fn.__name__.replace("_", ".", 1)
        app.add_url_rule("/" + path, path, fn, methods=["POST"])
        return fn

    @route
    def Plugin_Activate():
        """{} -> {"Implements": ["NetworkDriver", "IpamDriver"]}"""
        body()
        return {"Implements": IMPLEMENTS}

    @route
    def NetworkDriver_GetCapabilities():
        """{} -> {"Scope": "local"|"global", "ConnectivityScope": ...} (PYCNI_SCOPE)"""
        body()
        return driver.capabilities()

    @route
    def NetworkDriver_CreateNetwork():
        """{"NetworkID","Options":{generic,enable_ipv6,internal},"IPv4Data","IPv6Data"} -> {}"""
        return driver.create_network(p.parse_create_network(body()))

    @route
    def NetworkDriver_DeleteNetwork():
        """{"NetworkID"} -> {}"""
        return driver.delete_network(p.parse_network_ref(body()))

    @route
    def NetworkDriver_CreateEndpoint():
        """{"NetworkID","EndpointID","Interface":{"Address","AddressIPv6","MacAddress"},"Options"}
        -> {"Interface": {"MacAddress"?, "Address"?}} (only what Docker left empty)"""
        return driver.create_endpoint(p.parse_create_endpoint(body()))

    @route
    def NetworkDriver_DeleteEndpoint():
        """{"NetworkID","EndpointID"} -> {}"""
        return driver.delete_endpoint(p.parse_endpoint_ref(body()))

    @route
    def NetworkDriver_EndpointOperInfo():
        """{"NetworkID","EndpointID"} -> {"Value": {"cni.network","ips","netns",...}}"""
        return driver.oper_info(p.parse_endpoint_ref(body()))

    @route
    def NetworkDriver_Join():
        """{"NetworkID","EndpointID","SandboxKey","Options"}
        -> {"InterfaceName":{"SrcName","DstPrefix"},"Gateway","GatewayIPv6","StaticRoutes"}"""
        return driver.join(p.parse_join(body()))

    @route
    def NetworkDriver_Leave():
        """{"NetworkID","EndpointID"} -> {}"""
        return driver.leave(p.parse_endpoint_ref(body()))

    @route
    def NetworkDriver_ProgramExternalConnectivity():
        """{"NetworkID","EndpointID","Options":{portmap,exposedports}} -> {}"""
        return driver.program_external_connectivity(p.parse_connectivity(body()))

    @route
    def NetworkDriver_RevokeExternalConnectivity():
        """{"NetworkID","EndpointID"} -> {}"""
        return driver.revoke_external_connectivity(p.parse_connectivity(body()))

    # Swarm's discovery calls: nothing here uses node discovery.
    @route
    def NetworkDriver_DiscoverNew():
        """{"DiscoveryType","DiscoveryData"} -> {}"""
        body()
        return {}

    @route
    def NetworkDriver_DiscoverDelete():
        """{"DiscoveryType","DiscoveryData"} -> {}"""
        body()
        return {}

    @route
    def NetworkDriver_AllocateNetwork():
        """{"NetworkID","Options":{k: v},"IPv4Data","IPv6Data"} -> {"Options": {k: v}}
        (the swarm manager, global scope; nodes' CreateNetwork carries the answer)"""
        return driver.allocate_network(p.parse_allocate_network(body()))

    @route
    def NetworkDriver_FreeNetwork():
        """{"NetworkID"} -> {}"""
        p.parse_network_ref(body())
        return {}

    @route
    def IpamDriver_GetCapabilities():
        """{} -> {"RequiresMACAddress": false, "RequiresRequestReplay": true}"""
        body()
        return ipam.capabilities()

    @route
    def IpamDriver_GetDefaultAddressSpaces():
        """{} -> {"LocalDefaultAddressSpace","GlobalDefaultAddressSpace"}"""
        body()
        return ipam.default_address_spaces()

    @route
    def IpamDriver_RequestPool():
        """{"AddressSpace","Pool","SubPool","Options","V6"} -> {"PoolID","Pool","Data"}"""
        return ipam.request_pool(p.parse_request_pool(body()))

    @route
    def IpamDriver_ReleasePool():
        """{"PoolID"} -> {}"""
        return ipam.release_pool(p.parse_release_pool(body()))

    @route
    def IpamDriver_RequestAddress():
        """{"PoolID","Address","Options":{"RequestAddressType",macaddress}} -> {"Address","Data"}"""
        return ipam.request_address(p.parse_request_address(body()))

    @route
    def IpamDriver_ReleaseAddress():
        """{"PoolID","Address"} -> {}"""
        return ipam.release_address(p.parse_release_address(body()))

    runtimes = list({id(r): r for r in runtimes}.values())

    @app.before_request
    def start_timer():
        g.started = time.monotonic()
        deadline.start(call_deadline)
        host.reset_move_seconds()
        for runtime in runtimes:
            runtime.reset_exec_seconds()

    @app.after_request
    def log_call(response):
        deadline.clear()
        # Total time, the part spent in CNI plugin executables and the part the
        # kernel took to move links between netns: the rest is pycni's own.
        ms = (time.monotonic() - g.get("started", time.monotonic())) * 1000
        cni_ms = sum(r.exec_seconds() for r in runtimes) * 1000
        move_ms = host.move_seconds() * 1000
        log.debug("%s %s %.1f ms (CNI %.1f ms, netns move %.1f ms)", request.path,
                  response.status_code, ms, cni_ms, move_ms)
        response.headers["X-Pycni-Ms"] = f"{ms:.2f}"
        response.headers["X-Pycni-Cni-Ms"] = f"{cni_ms:.2f}"
        response.headers["X-Pycni-Move-Ms"] = f"{move_ms:.2f}"
        return response

    @app.errorhandler(Exception)
    def error(e):
        # IPAM answers carry errors under "Error"; Docker ignores "Err" there.
        key = "Error" if request.path.startswith("/IpamDriver.") else "Err"
        # An exception outside the view (e.g. an invalid return value) arrives
        # wrapped in a 500 InternalServerError: answer for the exception itself.
        if isinstance(e, InternalServerError) and e.original_exception is not None:
            e = e.original_exception
        if isinstance(e, HTTPException):
            if e.code == 404:
                return {key: f"pycni does not implement {request.path}"}, 404
            if e.code == 413:
                return {key: f"{request.path}: request body larger than "
                             f"{app.config.get('MAX_CONTENT_LENGTH')} bytes"}, 413
            return {key: f"{request.path}: {e.name}"}, e.code
        if isinstance(e, (DriverError, CNIError, HostError)):
            log.warning("%s failed: %s", request.path, e)
            # An empty message would read as success to Docker.
            return {key: str(e) or f"pycni: {type(e).__name__} in {request.path}"}
        trouble = explain_host_trouble(e)
        if trouble is not None:
            log.error("%s failed: %s: %s", request.path, type(e).__name__, e)
            return {key: trouble}
        log.exception("%s failed unexpectedly", request.path)
        return {key: f"pycni internal error in {request.path}: {type(e).__name__}: {e}"}

    return app
