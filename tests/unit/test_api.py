"""api.py: the Flask app with fake driver/IPAM objects, driven like Docker drives it."""

import json

import pytest

from cni_runner import PluginError
from cnm_bridge.docker import protocol as p
from cnm_bridge.docker.api import IMPLEMENTS, create_app
from cnm_bridge.errors import DriverError, NotFound, UnsupportedOption

NID = "3f" * 32
EID = "a1" * 32
POOL_ID = "pycni:0123456789abcdef01234567"
DOCKER_HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}


class Recorder:
    """Records (method, request) and answers from `answers`, or raises `raises[method]`."""

    def __init__(self, answers):
        self.calls = []
        self.answers = answers
        self.raises = {}

    def __getattr__(self, name):
        if name not in self.answers:
            raise AttributeError(name)

        def method(*args):
            self.calls.append((name, args[0] if args else None))
            if name in self.raises:
                raise self.raises[name]
            return self.answers[name]

        return method


class FakeDriver(Recorder):
    def __init__(self):
        super().__init__({
            "create_network": {}, "delete_network": {},
            "create_endpoint": {"Interface": {"MacAddress": "02:42:0a:46:00:32"}},
            "delete_endpoint": {}, "oper_info": {"Value": {"state": "ready"}},
            "join": {"InterfaceName": {"SrcName": "pyca1a1a1a1a1a1", "DstPrefix": "eth"},
                     "Gateway": "10.70.0.1"},
            "leave": {}, "program_external_connectivity": {},
            "revoke_external_connectivity": {},
            "capabilities": {"Scope": "local", "ConnectivityScope": "global"},
            "allocate_network": {"Options": {}},
        })


class FakeIpam(Recorder):
    def __init__(self):
        super().__init__({
            "capabilities": {"RequiresMACAddress": False, "RequiresRequestReplay": True},
            "default_address_spaces": {"LocalDefaultAddressSpace": "PycniLocal",
                                       "GlobalDefaultAddressSpace": "PycniGlobal"},
            "request_pool": {"PoolID": POOL_ID, "Pool": "10.60.0.0/16", "Data": {}},
            "release_pool": {},
            "request_address": {"Address": "10.60.0.2/16", "Data": {}},
            "release_address": {},
        })


class NoHost:
    def reset_move_seconds(self):
        pass

    def move_seconds(self):
        return 0.0


@pytest.fixture
def fakes():
    return FakeDriver(), FakeIpam(), NoHost(), []


@pytest.fixture
def client(fakes):
    app = create_app(*fakes)
    return app.test_client()


def post(client, path, body=None, raw=None, headers=None):
    """POST as Docker does: raw bytes, no Content-Type."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    resp = client.post("/" + path, data=data, headers=headers or DOCKER_HEADERS)
    if headers is None:
        assert resp.request.headers.get("Content-Type") is None
    return resp


PORTMAP = [{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080,
            "HostPortEnd": 8080}]
OPTS = {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
        "com.docker.network.portmap": PORTMAP}

# Every route, with a valid body and the fake method it must reach (None: answered by api).
ROUTES = [
    ("Plugin.Activate", None, None, {"Implements": IMPLEMENTS}),
    ("NetworkDriver.GetCapabilities", None, ("driver", "capabilities"),
     {"Scope": "local", "ConnectivityScope": "global"}),
    ("NetworkDriver.CreateNetwork", {
        "NetworkID": NID, "Options": {"com.docker.network.enable_ipv6": False,
                                      "com.docker.network.generic": {"foo": "bar"}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.70.0.0/24",
                      "Gateway": "10.70.0.1/24"}], "IPv6Data": []},
     ("driver", "create_network"), {}),
    ("NetworkDriver.DeleteNetwork", {"NetworkID": NID}, ("driver", "delete_network"), {}),
    ("NetworkDriver.CreateEndpoint", {
        "NetworkID": NID, "EndpointID": EID,
        "Interface": {"Address": "10.70.0.50/24", "AddressIPv6": "", "MacAddress": ""},
        "Options": dict(OPTS, **{"com.docker.network.endpoint.macaddress": "AkIKRgAy"})},
     ("driver", "create_endpoint"), {"Interface": {"MacAddress": "02:42:0a:46:00:32"}}),
    ("NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID},
     ("driver", "delete_endpoint"), {}),
    ("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID},
     ("driver", "oper_info"), {"Value": {"state": "ready"}}),
    ("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID,
                            "SandboxKey": "/var/run/docker/netns/0123456789ab", "Options": OPTS},
     ("driver", "join"), {"InterfaceName": {"SrcName": "pyca1a1a1a1a1a1", "DstPrefix": "eth"},
                          "Gateway": "10.70.0.1"}),
    ("NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID}, ("driver", "leave"), {}),
    ("NetworkDriver.ProgramExternalConnectivity",
     {"NetworkID": NID, "EndpointID": EID, "Options": OPTS},
     ("driver", "program_external_connectivity"), {}),
    ("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": NID, "EndpointID": EID},
     ("driver", "revoke_external_connectivity"), {}),
    ("NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {}}, None, {}),
    ("NetworkDriver.DiscoverDelete", {"DiscoveryType": 1, "DiscoveryData": {}}, None, {}),
    ("NetworkDriver.AllocateNetwork", {"NetworkID": NID, "Options": {}},
     ("driver", "allocate_network"), {"Options": {}}),
    ("NetworkDriver.FreeNetwork", {"NetworkID": NID}, None, {}),
    ("IpamDriver.GetCapabilities", None, ("ipam", "capabilities"),
     {"RequiresMACAddress": False, "RequiresRequestReplay": True}),
    ("IpamDriver.GetDefaultAddressSpaces", None, ("ipam", "default_address_spaces"),
     {"LocalDefaultAddressSpace": "PycniLocal", "GlobalDefaultAddressSpace": "PycniGlobal"}),
    ("IpamDriver.RequestPool", {"AddressSpace": "PycniLocal", "Pool": "10.60.0.0/16",
                                "SubPool": "", "Options": {}, "V6": False},
     ("ipam", "request_pool"), {"PoolID": POOL_ID, "Pool": "10.60.0.0/16", "Data": {}}),
    ("IpamDriver.ReleasePool", {"PoolID": POOL_ID}, ("ipam", "release_pool"), {}),
    ("IpamDriver.RequestAddress", {
        "PoolID": POOL_ID, "Address": "",
        "Options": {"com.docker.network.endpoint.macaddress": "02:42:0a:3c:00:02"}},
     ("ipam", "request_address"), {"Address": "10.60.0.2/16", "Data": {}}),
    ("IpamDriver.ReleaseAddress", {"PoolID": POOL_ID, "Address": "10.60.0.2"},
     ("ipam", "release_address"), {}),
]
ROUTE_IDS = [r[0] for r in ROUTES]


def test_every_route_is_tested(fakes):
    app = create_app(*fakes)
    served = {r.rule.lstrip("/") for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert served == set(ROUTE_IDS)


@pytest.mark.parametrize("path,body,target,answer", ROUTES, ids=ROUTE_IDS)
def test_every_route_answers(client, fakes, path, body, target, answer):
    resp = post(client, path, body)
    assert resp.status_code == 200, resp.data
    assert resp.get_json() == answer
    assert resp.mimetype == "application/json"
    if target is not None:
        obj = fakes[0] if target[0] == "driver" else fakes[1]
        assert [c[0] for c in obj.calls] == [target[1]]


@pytest.mark.parametrize("path", [r[0] for r in ROUTES if r[1] is None])
def test_empty_body_calls_accept_an_object_too(client, path):
    assert post(client, path, {}).status_code == 200


def test_post_without_content_type(client):
    # The Flask test client adds no Content-Type for raw bytes: check what reaches the app.
    resp = client.post("/Plugin.Activate", data=b"")
    assert resp.request.headers.get("Content-Type") is None
    assert resp.get_json() == {"Implements": ["NetworkDriver", "IpamDriver"]}
    body = json.dumps({"NetworkID": NID}).encode()
    resp = client.post("/NetworkDriver.DeleteNetwork", data=body)
    assert resp.request.headers.get("Content-Type") is None
    assert resp.status_code == 200 and resp.get_json() == {}


@pytest.mark.parametrize("ctype", ["application/json", "text/plain",
                                   "application/x-www-form-urlencoded"])
def test_any_content_type_accepted(client, fakes, ctype):
    body = json.dumps({"NetworkID": NID}).encode()
    resp = client.post("/NetworkDriver.DeleteNetwork", data=body,
                       headers={"Content-Type": ctype})
    assert resp.status_code == 200 and resp.get_json() == {}
    assert fakes[0].calls[-1][1] == p.NetworkRef(NID)


def test_activate_and_capabilities(client):
    assert set(post(client, "Plugin.Activate").get_json()["Implements"]) == {
        "NetworkDriver", "IpamDriver"}
    assert post(client, "NetworkDriver.GetCapabilities").get_json()["Scope"] == "local"


def test_parsed_requests_reach_the_driver(client, fakes):
    driver, ipam = fakes[:2]
    post(client, "NetworkDriver.CreateEndpoint", ROUTES[4][1])
    req = driver.calls[-1][1]
    assert isinstance(req, p.CreateEndpointRequest)
    assert str(req.address) == "10.70.0.50/24" and req.mac == "02:42:0a:46:00:32"
    post(client, "NetworkDriver.ProgramExternalConnectivity", ROUTES[9][1])
    assert driver.calls[-1][1].port_mappings[0].host_port == 8080
    post(client, "NetworkDriver.Join", ROUTES[7][1])
    assert driver.calls[-1][1].sandbox_key == "/var/run/docker/netns/0123456789ab"
    post(client, "IpamDriver.RequestAddress", {
        "PoolID": POOL_ID, "Address": "10.60.0.1",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert ipam.calls[-1][1].gateway is True


# -- malformed bodies ---------------------------------------------------------------

MALFORMED = [
    ("NetworkDriver.CreateNetwork", b"not json", "JSON"),
    ("NetworkDriver.CreateNetwork", b"[]", "JSON object"),
    ("NetworkDriver.CreateNetwork", json.dumps({"NetworkID": "ABC"}).encode(), "NetworkID"),
    ("NetworkDriver.CreateNetwork", json.dumps({"NetworkID": NID, "IPv4Data": [
        {"Pool": "10.0.0.0/99"}]}).encode(), "IPv4Data[0].Pool"),
    ("NetworkDriver.CreateEndpoint", json.dumps({"NetworkID": NID, "EndpointID": EID,
                                                 "Interface": {"MacAddress": "zz"}}).encode(),
     "Interface.MacAddress"),
    ("NetworkDriver.CreateEndpoint", json.dumps({
        "NetworkID": NID, "EndpointID": EID,
        "Options": {"com.docker.network.portmap": [{"Proto": 6, "Port": 70000}]}}).encode(),
     "Port"),
    ("NetworkDriver.CreateEndpoint", json.dumps({
        "NetworkID": NID, "EndpointID": EID,
        "Options": {"com.docker.network.portmap": [{"Proto": [6], "Port": 80}]}}).encode(),
     "Proto"),
    ("NetworkDriver.Join", json.dumps({"NetworkID": NID, "EndpointID": EID,
                                       "SandboxKey": 7}).encode(), "SandboxKey"),
    ("NetworkDriver.Leave", json.dumps({"NetworkID": NID}).encode(), "EndpointID"),
    ("NetworkDriver.DeleteNetwork", b'{"NetworkID": ' + b"[" * 100 + b"]" * 100 + b"}",
     "nested"),
    ("NetworkDriver.DeleteNetwork", b'{"a": "' + b"x" * (p.MAX_BODY + 1) + b'"}',
     "larger than"),
    ("Plugin.Activate", b"{", "JSON"),
    ("NetworkDriver.AllocateNetwork", b"{}", "NetworkID"),
    ("IpamDriver.RequestPool", json.dumps({"Pool": "fd00::/64"}).encode(), "IPv4"),
    ("IpamDriver.RequestAddress", json.dumps({"PoolID": POOL_ID, "Address": "x"}).encode(),
     "Address"),
    ("IpamDriver.ReleaseAddress", json.dumps({"PoolID": 5, "Address": "10.0.0.1"}).encode(),
     "PoolID"),
    ("IpamDriver.ReleasePool", b"[1]", "JSON object"),
    ("IpamDriver.GetCapabilities", b"nope", "JSON"),
]


@pytest.mark.parametrize("path,raw,word", MALFORMED,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_bodies(client, fakes, path, raw, word):
    resp = post(client, path, raw=raw)
    answer = resp.get_json()
    key = "Error" if path.startswith("IpamDriver.") else "Err"
    assert list(answer) == [key], answer
    assert word in answer[key]
    assert "Traceback" not in answer[key] and 'File "' not in answer[key]
    assert "internal error" not in answer[key]
    assert fakes[0].calls == [] and fakes[1].calls == []


# -- errors from the operations ------------------------------------------------------


@pytest.mark.parametrize("exc,text", [
    (DriverError("network 3f3f is not known"), "network 3f3f is not known"),
    (NotFound("endpoint a1a1 is not known to pycni"), "endpoint a1a1 is not known"),
    (UnsupportedOption("unsupported 'bridge' network option(s): foo"), "foo"),
    (PluginError("bridge", 7, "bad config", "details here", "ADD"),
     "CNI plugin bridge failed on ADD: bad config"),
])
def test_operation_errors_under_err(client, fakes, exc, text):
    fakes[0].raises["create_network"] = exc
    resp = post(client, "NetworkDriver.CreateNetwork", ROUTES[2][1])
    assert resp.status_code == 200
    assert resp.get_json() == {"Err": str(exc)} and text in str(exc)


def test_ipam_errors_under_error(client, fakes):
    fakes[1].raises["request_address"] = UnsupportedOption("address 10.1.0.1 is not in subnet")
    resp = post(client, "IpamDriver.RequestAddress", {"PoolID": POOL_ID, "Address": "10.1.0.1"})
    assert resp.get_json() == {"Error": "address 10.1.0.1 is not in subnet"}
    fakes[1].raises["request_pool"] = PluginError("host-local", 11, "try later")
    resp = post(client, "IpamDriver.RequestPool", {"Pool": "10.60.0.0/16"})
    assert list(resp.get_json()) == ["Error"] and "host-local" in resp.get_json()["Error"]


def test_empty_error_message_is_still_an_error(client, fakes):
    # {"Err": ""} would read as success to Docker.
    fakes[0].raises["create_network"] = DriverError()
    answer = post(client, "NetworkDriver.CreateNetwork", ROUTES[2][1]).get_json()
    assert answer["Err"]
    fakes[1].raises["release_pool"] = NotFound("")
    answer = post(client, "IpamDriver.ReleasePool", {"PoolID": POOL_ID}).get_json()
    assert answer["Error"]


@pytest.mark.parametrize("path,method,body", [
    ("NetworkDriver.Join", ("driver", "join"), ROUTES[7][1]),
    ("IpamDriver.RequestAddress", ("ipam", "request_address"), {"PoolID": POOL_ID}),
    ("IpamDriver.GetCapabilities", ("ipam", "capabilities"), None),
])
def test_unexpected_exception_is_clean(client, fakes, caplog, path, method, body):
    obj = fakes[0] if method[0] == "driver" else fakes[1]
    obj.raises[method[1]] = RuntimeError("boom")
    resp = post(client, path, body)
    key = "Error" if path.startswith("IpamDriver.") else "Err"
    answer = resp.get_json()
    assert list(answer) == [key]
    assert answer[key].startswith("pycni internal error")
    assert "boom" in answer[key] and "RuntimeError" in answer[key] and path in answer[key]
    assert "Traceback" not in answer[key] and "\n" not in answer[key]
    # The traceback goes to the log instead.
    assert any(r.exc_info for r in caplog.records)


def test_driver_returning_garbage_is_an_internal_error(client, fakes):
    fakes[0].answers["leave"] = None
    answer = post(client, "NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID}).get_json()
    assert answer["Err"].startswith("pycni internal error")


def test_unknown_path_404_json(client):
    resp = post(client, "NetworkDriver.Frobnicate", {})
    assert resp.status_code == 404
    assert resp.get_json() == {"Err": "pycni does not implement /NetworkDriver.Frobnicate"}
    resp = post(client, "IpamDriver.Frobnicate", {})
    assert resp.status_code == 404 and "Error" in resp.get_json()
    resp = client.get("/")
    assert resp.status_code == 404 and "Err" in resp.get_json()


def test_wrong_method_json(client):
    resp = client.get("/Plugin.Activate")
    assert resp.status_code == 405
    assert list(resp.get_json()) == ["Err"]


def test_keeps_answering_after_errors(client, fakes):
    fakes[0].raises["join"] = RuntimeError("boom")
    for _ in range(3):
        assert "Err" in post(client, "NetworkDriver.Join", ROUTES[7][1]).get_json()
        assert "Err" in post(client, "NetworkDriver.CreateNetwork", raw=b"{{").get_json()
        assert post(client, "Nope").status_code == 404
        assert "Error" in post(client, "IpamDriver.RequestPool", raw=b"[]").get_json()
    del fakes[0].raises["join"]
    assert post(client, "NetworkDriver.Join", ROUTES[7][1]).get_json()["Gateway"] == "10.70.0.1"
    assert post(client, "Plugin.Activate").get_json() == {"Implements": IMPLEMENTS}


def test_timing_header(client):
    resp = post(client, "Plugin.Activate")
    assert float(resp.headers["X-Pycni-Ms"]) >= 0


def _environmental():
    import errno
    import sqlite3
    import subprocess
    return [
        (subprocess.TimeoutExpired(["iptables", "-w", "-t", "nat", "-A", "X"], 60),
         ["iptables", "did not finish within 60 s", "xtables lock"]),
        (sqlite3.OperationalError("database is locked"),
         ["store is locked", "pycni gc"]),
        (sqlite3.OperationalError("disk I/O error"), ["disk I/O error", "dmesg"]),
        (OSError(errno.ENOSPC, "No space left on device"), ["No space left", "free space"]),
        (sqlite3.OperationalError("database or disk is full"), ["full", "free space"]),
    ]


@pytest.mark.parametrize("n", range(5))
def test_host_trouble_reaches_docker_as_a_pycni_error_with_a_fix(client, fakes, n):
    exc, words = _environmental()[n]
    fakes[0].raises["join"] = exc
    fakes[1].raises["request_address"] = exc
    for path, body, key in (("NetworkDriver.Join", ROUTES[7][1], "Err"),
                            ("IpamDriver.RequestAddress", {"PoolID": POOL_ID}, "Error")):
        answer = post(client, path, body).get_json()
        assert list(answer) == [key]
        assert "internal error" not in answer[key] and answer[key].startswith("pycni: ")
        for w in words:
            assert w in answer[key], answer[key]


def test_each_call_runs_under_the_call_deadline(fakes):
    """dockerd gives up on a plugin call after 30 s: everything a call runs (plugin execs,
    waits) sees the deadline; between calls there is none."""
    from cni_runner import deadline
    driver = fakes[0]
    seen = []
    driver.answers["create_network"] = {}
    real = driver.__getattr__("create_network")

    def create_network(req):
        seen.append(deadline.remaining(1000.0))
        return real(req)
    driver.create_network = create_network
    client = create_app(*fakes, call_deadline=25).test_client()
    body = {"NetworkID": "a" * 64, "Options": {}, "IPv4Data": [
        {"AddressSpace": "LocalDefault", "Pool": "10.60.0.0/16", "Gateway": "10.60.0.1/16"}]}
    assert post(client, "NetworkDriver.CreateNetwork", body).status_code == 200
    assert len(seen) == 1 and 20 < seen[0] <= 25
    assert deadline.remaining(1000.0) == 1000.0


def test_call_deadline_setting():
    from cnm_bridge.settings import from_sources
    assert from_sources(env={}).call_deadline == 25.0
    assert from_sources(env={"PYCNI_CALL_DEADLINE": "50"}).call_deadline == 50.0
