"""A stand-in for cnm_bridge.host.host.Host: the same methods, kept in memory.

It models what the Docker side relies on: netns that exist or not, links on
the host and in each netns, the iptables rules installed, ports held. The unit
tests give it to the driver, the attachments, the IPAM driver and the
reconciler, with the fake CNI plugins behind cni_runner.
"""

import os

from cnm_bridge.errors import HostError


class FakeHost:
    def __init__(self, root):
        self.root = str(root)
        self.netns = {}  # name -> {ifname: mac}
        self.sandboxes = set()  # paths that are mounted netns (Docker's SandboxKeys)
        self.sandbox_links = {}  # SandboxKey -> {ifname: mac}
        self.links = {}  # host link -> mac
        self.kinds = {}  # host link -> kind ("bridge", "device", "veth"); "bridge" if unset
        self.bridge_ports = {}  # bridge -> count
        self.rules = []  # installed hostrules.Rule, in order
        self.base = set()  # families whose chains and jumps are installed
        self.ports_in_use = set()  # (protocol, port)
        self.port_range = (40000, 40009)
        self.cleared_routes = []  # (netns, ifname)
        self.routes = []  # the host's on-link routes: routes.Route
        self.calls = []
        self.fail = {}  # method name -> exception to raise
        self._moves = 0.0

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        if name in self.fail:
            raise self.fail[name]

    # -- network namespaces ----------------------------------------------------------

    def netns_path(self, name):
        return os.path.join(self.root, "netns", name)

    def create_netns(self, name):
        self._call("create_netns", name)
        self.netns[name] = {}
        return self.netns_path(name)

    def pin_netns(self, name, source):
        self._call("pin_netns", name, source)
        if source not in self.sandboxes:
            raise HostError(f"cannot pin the container's netns {source}: no such netns")
        self.netns[name] = self.sandbox_links.setdefault(source, {})
        return self.netns_path(name)

    def delete_netns(self, name):
        self._call("delete_netns", name)
        return self.netns.pop(name, None) is not None

    def netns_exists(self, name):
        return name in self.netns

    def is_netns(self, path):
        return path in self.sandboxes

    def add_sandbox(self, path, ifnames=()):
        """What Docker 28 has at Join: the container's netns, mounted at the SandboxKey."""
        self.sandboxes.add(path)
        self.sandbox_links[path] = {n: "02:00:00:00:00:01" for n in ifnames}

    # -- links ------------------------------------------------------------------------

    def hand_out(self, ns_name, ifname, tmpname, mac=None):
        self._call("hand_out", ns_name, ifname, tmpname)
        if tmpname in self.links:
            raise HostError(f"move {tmpname} to the host netns: File exists")
        self.links[tmpname] = mac or "0a:58:00:00:00:01"
        self._moves += 0.001
        return self.links[tmpname]

    def take_back(self, ns_name, tmpname, ifname, addresses):
        self._call("take_back", ns_name, tmpname, ifname, tuple(addresses))
        self.links.pop(tmpname, None)
        self.netns.setdefault(ns_name, {})[ifname] = "stand-in"

    def delete_link(self, name):
        self._call("delete_link", name)
        return self.links.pop(name, None) is not None

    def link_exists(self, name):
        return name in self.links

    def link_kind(self, name):
        return self.kinds.get(name, "bridge") if name in self.links else None

    def bridge_has_ports(self, name):
        return self.bridge_ports.get(name, 0) > 0

    def free_ifname(self, ns_name, prefix="eth"):
        taken = self.netns.get(ns_name, {})
        n = 0
        while f"{prefix}{n}" in taken:
            n += 1
        self.netns.setdefault(ns_name, {})[f"{prefix}{n}"] = ""
        return f"{prefix}{n}"

    def clear_default_routes(self, ns_name, ifname):
        self._call("clear_default_routes", ns_name, ifname)
        self.cleared_routes.append((ns_name, ifname))
        return [2]

    def link_exists_in(self, ns_name, ifname):
        return ifname in self.netns.get(ns_name, {})

    def link_mac_in(self, ns_name, ifname):
        return self.netns.get(ns_name, {}).get(ifname, "")

    def onlink_routes(self):
        return list(self.routes)

    def move_seconds(self):
        return self._moves

    def reset_move_seconds(self):
        self._moves = 0.0

    # -- iptables -----------------------------------------------------------------------

    def install_rules(self, rules, what):
        self._call("install_rules", what)
        for r in rules:
            self.base.add(r.family)
            if r not in self.rules:
                self.rules.append(r)

    def remove_rules(self, rules):
        self._call("remove_rules")
        self.rules = [r for r in self.rules if r not in rules]

    def enable_bridge_netfilter(self):
        self._call("enable_bridge_netfilter")

    def remove_tagged_rules(self, tag):
        self._call("remove_tagged_rules", tag)
        gone = [r for r in self.rules if any(a.startswith(tag + " ") for a in r.args)]
        self.rules = [r for r in self.rules if r not in gone]
        return len(gone)

    def remove_base_rules(self, family):
        self.base.discard(family)

    def rule_tags(self):
        return {a.split(" ")[0] for r in self.rules for a in r.args
                if a.startswith("pycni-") and " " in a}

    def rules_mentioning(self, text):
        return [r for r in self.rules if text in " ".join(r.args)]

    # -- ports --------------------------------------------------------------------------

    def port_in_use(self, mapping):
        self._call("port_in_use", mapping["protocol"], mapping["hostPort"])
        return (mapping["protocol"], mapping["hostPort"]) in self.ports_in_use

    def ephemeral_ports(self):
        return self.port_range
