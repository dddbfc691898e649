"""The records pycni keeps: a network's spec, an endpoint, an IPAM pool.

Values only: each owns its mapping to and from what the store writes (a JSON
document, a row), and the words its fields take are named here once
(`EndpointState`, `AttachMode`, `NetworkKind`). Nothing here decides anything.
"""

import dataclasses
import json
from dataclasses import dataclass, field


class EndpointState:
    """An endpoint's life, in the order it goes."""

    CREATED = "created"  # CreateEndpoint answered, CNI not run yet
    CREATING = "creating"  # ADD in flight
    READY = "ready"  # attached
    DELETING = "deleting"  # DEL due


class AttachMode:
    """Where an endpoint's CNI runs (an endpoint's `mode`; a network's `attach`)."""

    AUTO = "auto"  # a network's: handoff unless the list or the endpoint needs direct
    HANDOFF = "handoff"  # a scratch netns; the interface handed to Docker
    DIRECT = "direct"  # the container's own netns
    CHOICES = (AUTO, HANDOFF, DIRECT)


class NetworkKind:
    """A network's `mode`: where its list comes from."""

    GENERATED = "generated"  # made from Docker's options
    NAMED = "named"  # a conflist of the conf dir


@dataclass(frozen=True)
class NetworkSpec:
    """All pycni derives about a network, made once at CreateNetwork and stored whole."""

    id: str
    cni_name: str
    mode: str  # NetworkKind
    conflist: dict  # the whole list as pycni runs it (ips capability on its IPAM plugin)
    endpoint_list: dict  # what an endpoint's ADD/DEL runs: conflist minus port plugins
    direct_list: dict  # the same for CNI run in the container's netns: MAC set by CNI
    ports_list: dict = None  # the port plugins alone, run when Docker publishes ports
    cni_type: str = ""  # the main plugin's type
    internal: bool = False
    ipam: str = "docker"  # "docker" (Docker's IPAM picks) or "pycni" (the IPAM driver)
    static_ipam: bool = False  # each endpoint's list gets `static` with its addresses
    ipv6: bool = False
    subnets: tuple = ()  # Docker's pools, as CIDR strings
    gateways: dict = field(default_factory=dict)  # {subnet: Docker's gateway address}
    bridge: str = ""  # the Linux bridge of a bridge list
    owned_links: tuple = ()  # links this network caused to exist (deleted with it)
    ipam_dir: str = ""  # host-local's dir of a generated network
    masquerade: bool = False  # pycni's MASQUERADE per subnet (generated lists)
    forward: bool = False  # pycni's forwarding rules (bridge, ptp lists without firewall)
    isolate: bool = False  # pycni's isolation from other networks (generated bridge, ptp)
    icc: bool = True
    lost_settings: tuple = ()  # what a handoff would drop (tuning sysctl, sbr, vrf)
    allow_loss: bool = False
    attach: str = AttachMode.AUTO
    host_ip: str = ""  # default host address of published ports
    own_mac: bool = True  # False where the interface cannot have a MAC of its own (ipvlan)
    extra: dict = field(default_factory=dict)  # reserved for fields of later releases

    _TUPLES = ("subnets", "owned_links", "lost_settings")

    def to_json(self):
        doc = dataclasses.asdict(self)
        for key in self._TUPLES:
            doc[key] = list(doc[key])
        return doc

    @classmethod
    def from_json(cls, doc):
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        for key in cls._TUPLES:
            values[key] = tuple(values.get(key) or ())
        return cls(**values)

    @property
    def generated(self):
        return self.mode == NetworkKind.GENERATED


# An Endpoint field -> (its column, to the row, from the row). Plain columns are left out.
_JSON = (json.dumps, json.loads)
_ENDPOINT_COLUMNS = {
    "addresses": _JSON,
    "mac_given": (int, bool),
    "cni_args": (json.dumps, lambda text: [tuple(p) for p in json.loads(text)]),
    "cap_args": _JSON,
    "result": (lambda v: json.dumps(v) if v else None,
               lambda text: json.loads(text) if text else None),
    "ports": _JSON,
}


@dataclass
class Endpoint:
    """One Docker endpoint; `state` is an EndpointState, `mode` an AttachMode or ""."""

    id: str
    network_id: str
    state: str
    netns: str = ""  # pycni's netns for it: the scratch one (handoff) or the pin (direct)
    tmp_ifname: str = ""  # the handed-off link's name on the host (handoff only)
    ifname: str = "eth0"  # CNI_IFNAME
    mode: str = ""  # AttachMode.HANDOFF or DIRECT, decided at Join
    addresses: list = field(default_factory=list)  # Docker's, as CIDR strings
    mac: str = ""
    mac_given: bool = False  # the user's --mac-address
    cni_args: list = field(default_factory=list)
    cap_args: dict = field(default_factory=dict)
    result: dict = None
    boot_id: str = field(default="", compare=False)
    ports: list = field(default_factory=list)
    sandbox_key: str = ""
    created_unix: float = field(default=0.0, compare=False)
    changed_unix: float = field(default=0.0, compare=False)  # the last state change

    # Kept by the store itself, not written from the value.
    STORE_KEPT = ("created_unix", "changed_unix")

    @property
    def ips(self):
        """The bare addresses (no prefix length): what two endpoints can both hold."""
        return frozenset(a.split("/")[0] for a in self.addresses)

    @classmethod
    def columns(cls):
        """The columns the value writes, in the dataclass's order."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in cls.STORE_KEPT]

    def to_row(self):
        """{column: value} as SQLite stores it."""
        row = {}
        for name in self.columns():
            value = getattr(self, name)
            row[name] = _ENDPOINT_COLUMNS[name][0](value) if name in _ENDPOINT_COLUMNS else value
        return row

    @classmethod
    def from_row(cls, row):
        values = {name: _ENDPOINT_COLUMNS[name][1](row[name]) if name in _ENDPOINT_COLUMNS
                  else row[name] for name in cls.columns()}
        return cls(created_unix=julianday_unix(row["created"]),
                   changed_unix=julianday_unix(row["changed"]), **values)


def julianday_unix(julianday):
    """SQLite's julianday('now') -> seconds since the epoch."""
    return (julianday - 2440587.5) * 86400.0


@dataclass
class Pool:
    """An IPAM pool of pycni's IPAM driver."""

    id: str
    subnet: str
    v6: bool = False
    kind: str = "host-local"  # the IPAM plugin run alone: host-local or static
    cni_network: str = ""  # the conflist whose IPAM this is (--ipam-opt cni.network)
    ipam: dict = field(default_factory=dict)  # that conflist's IPAM section, verbatim
    range: dict = field(default_factory=dict)  # host-local range of a pool made here
    gateway: str = ""

    def to_json(self):
        doc = dataclasses.asdict(self)
        doc.pop("id")
        return doc

    @classmethod
    def from_json(cls, pool_id, doc):
        # The first release wrote "type" and "base" for "kind" and "ipam".
        return cls(id=pool_id, subnet=doc["subnet"], v6=bool(doc.get("v6")),
                   kind=doc.get("kind") or doc.get("type") or "host-local",
                   cni_network=doc.get("cni_network") or "",
                   ipam=doc.get("ipam") or doc.get("base") or {},
                   range=doc.get("range") or {}, gateway=doc.get("gateway") or "")
