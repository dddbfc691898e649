"""CNI results: validation and conversion between spec versions.

Results are held in one canonical shape (1.x: `interfaces`, `ips` without
`version`, `routes`, `dns`, plus `cniVersion`) and rendered into the version a
list runs at, as libcni's types/create and types/100 do.
"""

import copy
import ipaddress
import json

from . import version as cniversion
from .errors import ResultError

IFACE_FIELDS_1_1 = ("mtu", "socketPath", "pciID")
ROUTE_FIELDS_1_1 = ("mtu", "advmss", "priority", "table", "scope")


def _cidr(value, what):
    # "/" required: ip_interface() takes a bare address as /32, Go's ParseCIDR does not.
    if not isinstance(value, str) or "/" not in value:
        raise ResultError(f"{what}: expected a CIDR string, got {value!r}")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise ResultError(f"{what}: invalid CIDR {value!r}") from None


def _ip(value, what):
    if not isinstance(value, str):
        raise ResultError(f"{what}: expected an IP string, got {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ResultError(f"{what}: invalid IP {value!r}") from None


def _from_020(raw):
    out = {"cniVersion": raw.get("cniVersion", "0.2.0"), "interfaces": [], "ips": [],
           "routes": [], "dns": raw.get("dns") or {}}
    for key in ("ip4", "ip6"):
        block = raw.get(key)
        if not block:
            continue
        if not isinstance(block, dict):
            raise ResultError(f"{key} must be an object")
        ipc = {"address": block.get("ip")}
        if block.get("gateway"):
            ipc["gateway"] = block["gateway"]
        out["ips"].append(ipc)
        out["routes"].extend(block.get("routes") or [])
    return out


def validate(res):
    """Check a canonical result; raise ResultError naming the bad field."""
    for key in ("interfaces", "ips", "routes"):
        if not isinstance(res.get(key, []), list):
            raise ResultError(f"result field {key!r} must be a list")
    n_ifaces = len(res.get("interfaces", []))
    for i, iface in enumerate(res.get("interfaces", [])):
        if not isinstance(iface, dict) or not isinstance(iface.get("name"), str):
            raise ResultError(f"interfaces[{i}] must be an object with a name")
    for i, ipc in enumerate(res.get("ips", [])):
        if not isinstance(ipc, dict):
            raise ResultError(f"ips[{i}] must be an object")
        _cidr(ipc.get("address"), f"ips[{i}].address")
        if ipc.get("gateway") is not None:
            _ip(ipc["gateway"], f"ips[{i}].gateway")
        idx = ipc.get("interface")
        if idx is not None:
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n_ifaces:
                raise ResultError(
                    f"ips[{i}].interface index {idx!r} out of range (0..{n_ifaces - 1})")
    for i, route in enumerate(res.get("routes", [])):
        if not isinstance(route, dict):
            raise ResultError(f"routes[{i}] must be an object")
        _cidr(route.get("dst"), f"routes[{i}].dst")
        if route.get("gw") is not None:
            _ip(route["gw"], f"routes[{i}].gw")
    if not isinstance(res.get("dns", {}) or {}, dict):
        raise ResultError("result field 'dns' must be an object")
    return res


def normalize(raw, default_version):
    """Any version's result (dict or JSON bytes) -> validated canonical dict."""
    fresh = isinstance(raw, (bytes, str))  # parsed here: ours to change, no copy needed
    if fresh:
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ResultError(f"result is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ResultError("result must be a JSON object")
    ver = raw.get("cniVersion") or default_version
    try:
        parsed = cniversion.parse(ver)
    except Exception:
        raise ResultError(f"result has invalid cniVersion {ver!r}") from None
    if ver not in cniversion.SUPPORTED_VERSIONS:
        raise ResultError(f"result has unsupported cniVersion {ver!r}")
    if parsed < (0, 3, 0):
        res = _from_020(raw)
    else:
        res = raw if fresh else copy.deepcopy(raw)
        for ipc in res.get("ips", []) or []:
            if isinstance(ipc, dict):
                ipc.pop("version", None)
    res["cniVersion"] = ver
    res.setdefault("interfaces", [])
    res.setdefault("ips", [])
    res.setdefault("routes", [])
    res.setdefault("dns", {})
    if res["interfaces"] is None:
        res["interfaces"] = []
    if res["ips"] is None:
        res["ips"] = []
    if res["routes"] is None:
        res["routes"] = []
    return validate(res)


def render(res, target):
    """Canonical result -> a dict in version `target`."""
    t = cniversion.parse(target)
    if t < (0, 3, 0):
        return _to_020(res, target)
    out = copy.deepcopy(res)
    out["cniVersion"] = target
    if t < (1, 1, 0):
        for iface in out.get("interfaces", []):
            for k in IFACE_FIELDS_1_1:
                iface.pop(k, None)
        for route in out.get("routes", []):
            for k in ROUTE_FIELDS_1_1:
                route.pop(k, None)
    if t < (1, 0, 0):
        for ipc in out.get("ips", []):
            ipc["version"] = "4" if _cidr(ipc["address"], "address").version == 4 else "6"
    if not out.get("dns"):
        out.pop("dns", None)
    return out


def _to_020(res, target):
    out = {"cniVersion": target}
    for ipc in res.get("ips", []):
        addr = _cidr(ipc["address"], "address")
        key = "ip4" if addr.version == 4 else "ip6"
        if key in out:
            continue  # 0.2.0 holds one address per family
        block = {"ip": ipc["address"]}
        if ipc.get("gateway"):
            block["gateway"] = ipc["gateway"]
        routes = [{k: v for k, v in r.items() if k in ("dst", "gw")}
                  for r in res.get("routes", [])
                  if _cidr(r["dst"], "dst").version == addr.version]
        if routes:
            block["routes"] = routes
        out[key] = block
    if res.get("dns"):
        out["dns"] = res["dns"]
    return out


def canonical(raw):
    """A result of any version (as a list of that version returns it) -> the 1.x shape
    this module keeps: `interfaces`, `ips` (no `version`), `routes`, `dns`. Readers that
    look at addresses use it, so a 0.2.0 list's `ip4` block reads like anyone's `ips`."""
    ver = raw.get("cniVersion") if isinstance(raw, dict) else None
    return normalize(raw, ver or "1.0.0")


def convert(raw, target, default_version=None):
    """Result in any version -> result in `target`."""
    return render(normalize(raw, default_version or target), target)
