"""The network driver's operations: one method per protocol call, in CNI terms.

Flow (docs/architecture.md has the why): CreateNetwork records a conflist;
CreateEndpoint runs CNI ADD into a private scratch netns and moves the
container-side link to the host under a temporary name; Join hands that link
to Docker; DeleteEndpoint takes it back, runs CNI DEL and drops the netns.
"""

import logging
import os
import shutil

from cni_runner import CNIError, RuntimeConf, conflist_from_bytes, conflist_from_dict, load_by_name

from . import iptables, isolation, masquerade, netlink, ports, translate
from .errors import DriverError, NotFound, UnsupportedOption
from .bootid import current_boot_id
from .deleter import Deleter, Pending
from .store import Endpoint, Network

log = logging.getLogger(__name__)
IFNAME = translate.CONTAINER_IFNAME


class Driver:
    def __init__(self, settings, store, runtime, defer_delete=False):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.deleter = Deleter(self._deferred_teardown) if defer_delete else None

    # -- networks -------------------------------------------------------------

    def create_network(self, req):
        if self.store.get_network(req.network_id):
            return {}  # a replay: the network is already recorded
        for d in req.ipv4_data + req.ipv6_data:
            if d.address_space == "null" or (d.pool is not None and d.pool.prefixlen == 0):
                raise UnsupportedOption(
                    "--ipam-driver null is not supported: use Docker's default IPAM or "
                    "--ipam-driver pycni")
        plan = translate.plan_network(req.generic)
        ipam_mode = "pycni" if any(d.address_space.startswith("Pycni")
                                   for d in req.ipv4_data + req.ipv6_data) else "docker"
        if plan.mode == "named":
            try:
                conf = load_by_name(self.settings.conf_dir, plan.conflist_name)
            except CNIError as e:
                raise DriverError(str(e)) from None
            raw = conf.raw
            translate.check_handoff(conf.name, raw, plan.allow_loss)
            if ipam_mode == "docker":
                translate.check_conflist_matches(conf.name, raw, req.ipv4_data, req.ipv6_data)
        else:
            if plan.cni_type in ("macvlan", "ipvlan"):
                parent = dict(plan.options)[translate.OPT_PARENT]
                if not netlink.link_exists(parent):
                    raise UnsupportedOption(f"parent interface {parent!r} does not exist")
            raw = translate.generate_conflist(
                req.network_id, plan, req.ipv4_data, req.ipv6_data, req.internal,
                self.settings.ipam_dir)
        try:
            raw = translate.with_ips_capability(raw)
            conflist = conflist_from_dict(raw, f"network {req.network_id[:12]}")
            self.runtime.validate(conflist)
        except CNIError as e:
            raise DriverError(str(e)) from None
        owned = [p["bridge"] for p in raw["plugins"]
                 if p.get("type") == "bridge" and p.get("bridge")
                 and not netlink.link_exists(p["bridge"])]
        net = Network(
            id=req.network_id, cni_name=conflist.name, mode=plan.mode, conflist=raw,
            internal=req.internal, ipam=ipam_mode, owned_links=owned,
            ipam_dir=self.settings.ipam_dir if plan.mode == "generated" else "",
            isolated_bridge=translate.isolated_bridge(plan, raw), ipv6=req.ipv6,
            masquerade=translate.masquerade_for(plan, raw, req.ipv4_data, req.ipv6_data,
                                                req.internal))
        try:
            self.install_host_rules(net)
            self.store.add_network(net)
        except Exception:
            self._remove_host_rules(net)
            raise
        log.info("network %s: CNI network %s (%s)", req.network_id[:12], conflist.name,
                 plan.mode)
        return {}

    def delete_network(self, ref):
        net = self.store.get_network(ref.network_id)
        if net is None:
            return {}  # idempotent: Docker may retry after a failure it only logs
        for ep in self.store.endpoints(net.id):
            self._teardown(ep, net)
        for link in net.owned_links:
            if netlink.bridge_has_ports(link):
                log.warning("network %s: bridge %s still has ports; kept", net.id[:12], link)
            elif netlink.link_exists(link) and not self._link_used_elsewhere(link, net.id):
                netlink.delete_link(link)
        self._remove_host_rules(net)
        if net.mode == "generated" and net.ipam_dir:
            shutil.rmtree(os.path.join(net.ipam_dir, net.cni_name), ignore_errors=True)
        self.store.delete_network(net.id)
        log.info("network %s deleted", net.id[:12])
        return {}

    def install_host_rules(self, net):
        """The network's own iptables rules (isolation, masquerade); idempotent.

        Also run at start: iptables rules do not survive a reboot, the store does.
        """
        try:
            if net.isolated_bridge:
                isolation.isolate(net.isolated_bridge, net.id, net.ipv6)
            if net.masquerade:
                masquerade.install(net.masquerade["bridge"], net.masquerade["subnets"],
                                   net.cni_name)
        except iptables.IptablesError as e:
            raise DriverError(str(e)) from None

    def _remove_host_rules(self, net):
        if net.isolated_bridge:
            isolation.release(net.isolated_bridge, net.id, net.ipv6)
        if net.masquerade:
            masquerade.remove(net.masquerade["bridge"], net.masquerade["subnets"], net.cni_name)

    def _link_used_elsewhere(self, link, network_id):
        return any(link in n.owned_links or any(p.get("bridge") == link
                                                for p in n.conflist.get("plugins", []))
                   for n in self.store.networks() if n.id != network_id)

    def _network(self, network_id):
        net = self.store.get_network(network_id)
        if net is None:
            raise NotFound(f"network {network_id[:12]} is not known to pycni")
        return net

    # -- endpoints ------------------------------------------------------------

    def create_endpoint(self, req):
        net = self._network(req.network_id)
        if req.options:
            # `docker network connect --driver-opt k=v`: nothing here takes one yet.
            raise UnsupportedOption(
                f"unsupported endpoint option(s): {', '.join(sorted(req.options))}")
        ep = self.store.get_endpoint(req.endpoint_id)
        if ep is not None and ep.state == "ready" and ep.network_id == net.id:
            return self._endpoint_answer(req, ep)  # a replay
        if ep is not None:
            self._teardown(ep, net)  # left half-made by an earlier attempt
        # Docker's IPAM may hand out again an address whose DEL is still pending.
        want = {str(a.ip) for a in (req.address, req.address6) if a is not None}
        self._wait_deletions(lambda p: p.cni_name == net.cni_name and p.addresses & want)
        conflist = self._endpoint_conflist(net, [req.address, req.address6])
        # With pycni's IPAM the address is already in the list (static): no IP arg.
        ipam_type = None if net.ipam == "pycni" else (
            translate.main_ipam(conflist.raw) or {}).get("type")
        args = translate.endpoint_cni_args(req.mac)
        # Port mappings wait for ProgramExternalConnectivity, which Docker sends
        # only for the container's gateway endpoint.
        caps = translate.endpoint_capability_args(ipam_type, req.address, req.address6)
        ep = Endpoint(id=req.endpoint_id, network_id=net.id, state="creating",
                      netns=translate.netns_name(req.endpoint_id),
                      tmp_ifname=translate.tmp_ifname(req.endpoint_id),
                      cni_args=args, cap_args=caps, boot_id=current_boot_id())
        self.store.add_endpoint(ep)
        try:
            netlink.delete_netns(ep.netns)
            path = netlink.create_netns(ep.netns)
            result = self.runtime.add(conflist, RuntimeConf(ep.id, path, IFNAME, args, caps))
            translate.check_addresses(net.cni_name, req.address, req.address6,
                                      translate.container_ips(result))
            ep.mac = netlink.hand_out(ep.netns, IFNAME, ep.tmp_ifname,
                                      translate.container_mac(result))
            ep.result, ep.state = result, "ready"
            self.store.update_endpoint(ep)
        except Exception:
            try:
                self._teardown(ep, net)
            except Exception as cleanup:
                log.error("endpoint %s: cleanup after failed create failed: %s",
                          ep.id[:12], cleanup)
            raise
        log.info("endpoint %s on %s: %s", ep.id[:12], net.cni_name,
                 ", ".join(str(a) for a in translate.container_ips(ep.result)))
        return self._endpoint_answer(req, ep)

    def _endpoint_conflist(self, net, addresses):
        """The list an endpoint's ADD/DEL runs: the network's, without its portmap plugins
        (run on their own at ProgramExternalConnectivity) and, with pycni's IPAM, with
        `static` holding the address already allocated."""
        raw = translate.without_port_plugins(net.conflist)
        if net.ipam == "pycni":
            raw = translate.static_conflist(raw, [a for a in addresses if a is not None])
        return conflist_from_dict(raw)

    def _endpoint_answer(self, req, ep):
        return translate.endpoint_answer(req.address, req.address6, bool(req.mac),
                                         translate.container_ips(ep.result), ep.mac)

    def join(self, req):
        net = self._network(req.network_id)
        ep = self.store.get_endpoint(req.endpoint_id)
        if ep is None or ep.state != "ready":
            raise NotFound(f"endpoint {req.endpoint_id[:12]} is not known to pycni")
        return translate.join_answer(ep.result, ep.tmp_ifname, net.internal)

    def leave(self, ref):
        return {}  # the link is still in the sandbox; DeleteEndpoint cleans up

    def delete_endpoint(self, ref):
        ep = self.store.get_endpoint(ref.endpoint_id)
        if ep is None:
            return {}
        net = self.store.get_network(ep.network_id)
        if self.deleter is None:
            self._teardown(ep, net)
            return {}
        self._revoke(ep, net)  # ports are freed before the answer
        ep.state = "deleting"
        self.store.update_endpoint(ep)
        ips = translate.container_ips(ep.result) if ep.result else []
        self.deleter.submit(Pending(ep.id, ep.network_id, net.cni_name if net else "",
                                    frozenset(str(a.ip) for a in ips), bool(ep.ports)))
        return {}

    def _deferred_teardown(self, endpoint_id):
        ep = self.store.get_endpoint(endpoint_id)
        if ep is not None:
            self._teardown(ep, self.store.get_network(ep.network_id))

    def _wait_deletions(self, predicate):
        if self.deleter is not None and not self.deleter.wait_for(predicate):
            raise DriverError("timed out waiting for an earlier endpoint's CNI DEL")

    def oper_info(self, ref):
        """{"Value": {...}}: shown nowhere by Docker, useful with the plugin API itself."""
        ep = self.store.get_endpoint(ref.endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {ref.endpoint_id[:12]} is not known to pycni")
        net = self.store.get_network(ep.network_id)
        value = {"cni.network": net.cni_name if net else "", "netns": ep.netns,
                 "state": ep.state}
        if ep.result:
            value["ips"] = [str(a) for a in translate.container_ips(ep.result)]
        if ep.ports:
            value["portMappings"] = ep.ports
        return {"Value": value}

    def program_external_connectivity(self, req):
        """Publish `-p`/`-P` ports through the chain's portmap plugin, run on its own."""
        net = self._network(req.network_id)
        ep = self._ready_endpoint(req.endpoint_id)
        if net.internal or not req.port_mappings or ep.ports:
            return {}  # nothing to publish, or a replay
        plist = self._ports_list(net)
        if plist is None:
            raise UnsupportedOption(
                f"CNI network {net.cni_name!r} has no portmap plugin (capabilities "
                "portMappings), so it cannot publish ports")
        self._wait_deletions(lambda p: p.has_ports)
        # One chooser at a time host-wide, so two containers never get one port.
        with self.runtime.locks.named("pycni-host-ports"):
            taken = [m for other in self.store.endpoints() if other.id != ep.id
                     for m in other.ports]
            mappings = ports.choose(list(req.port_mappings), taken)
            if not mappings:
                return {}
            self.runtime.add(plist, RuntimeConf(ep.id, netlink.netns_path(ep.netns), IFNAME,
                                                ep.cni_args, {"portMappings": mappings}),
                             prev_result=ep.result)
            ep.ports = mappings
            self.store.update_endpoint(ep)
        log.info("endpoint %s publishes %s", ep.id[:12], ports.describe(mappings))
        return {}

    def revoke_external_connectivity(self, req):
        ep = self.store.get_endpoint(req.endpoint_id)
        if ep is not None:
            self._revoke(ep, self.store.get_network(ep.network_id))
        return {}

    def _revoke(self, ep, net):
        plist = self._ports_list(net) if net else None
        if plist is not None and self.runtime.cache.exists(plist.name, ep.id, IFNAME):
            self.runtime.delete(plist, RuntimeConf(ep.id, netlink.netns_path(ep.netns), IFNAME,
                                                   ep.cni_args, {"portMappings": ep.ports}))
        if ep.ports:
            log.info("endpoint %s unpublishes %s", ep.id[:12], ports.describe(ep.ports))
            ep.ports = []
            self.store.update_endpoint(ep)

    def _ports_list(self, net):
        """The chain's portMappings plugins as a list of their own, or None."""
        plugins = [p for p in net.conflist.get("plugins", []) if translate.is_port_plugin(p)]
        if not plugins:
            return None
        raw = {k: v for k, v in net.conflist.items() if k in ("cniVersion", "cniVersions")}
        raw.update(name=translate.ports_network_name(net.cni_name), plugins=plugins)
        return conflist_from_dict(raw)

    def _ready_endpoint(self, endpoint_id):
        ep = self.store.get_endpoint(endpoint_id)
        if ep is None or ep.state != "ready":
            raise NotFound(f"endpoint {endpoint_id[:12]} is not known to pycni")
        return ep

    # -- teardown -------------------------------------------------------------

    def _teardown(self, ep, net):
        """CNI DEL of an endpoint and removal of all it made; safe to repeat.

        The deferred deleter, DeleteNetwork and reconciliation may reach the same
        endpoint at once: one does the work, the others find its row gone.
        """
        with self._endpoint_lock(ep.id):
            current = self.store.get_endpoint(ep.id)
            if current is None:
                return
            self._teardown_locked(current, net)

    def _endpoint_lock(self, endpoint_id):
        return self.runtime.locks.bucket("ep", endpoint_id)

    def _teardown_locked(self, ep, net):
        if ep.state != "deleting":
            ep.state = "deleting"
            self.store.update_endpoint(ep)
        self._revoke(ep, net)
        ips = translate.container_ips(ep.result) if ep.result else []
        conflist = self._endpoint_conflist(net, ips) if net else self._cached_conflist(ep.id)
        self._cni_delete(conflist, ep.id, ep.netns, ep.tmp_ifname, [str(a) for a in ips],
                         ep.cni_args, ep.cap_args)
        self.store.delete_endpoint(ep.id)
        log.info("endpoint %s deleted", ep.id[:12])

    def _cached_conflist(self, container_id):
        for entry in self.runtime.cache.entries():
            if entry.container_id == container_id:
                try:
                    return conflist_from_bytes(entry.config, "cached config")
                except CNIError:
                    return None
        return None

    def release_attachment(self, entry):
        """DEL a cached CNI attachment pycni has no endpoint for (reconciliation)."""
        conflist = conflist_from_bytes(entry.config, "cached config")
        # No addresses given: _cni_delete takes them from this very cache entry.
        self._cni_delete(conflist, entry.container_id, translate.netns_name(entry.container_id),
                         translate.tmp_ifname(entry.container_id), [], entry.cni_args,
                         entry.capability_args)

    def _cni_delete(self, conflist, container_id, netns, tmpname, addresses, args, caps):
        """DEL an attachment in its scratch netns, then remove the netns and the link.

        No cache entry means no plugin ever ran (cni_runner caches its intent
        before the first ADD) or DEL already finished: nothing to DEL then.
        """
        pending = conflist is not None and self.runtime.cache.exists(
            conflist.name, container_id, IFNAME)
        if pending:
            entry = self.runtime.cache.load(conflist.name, container_id, IFNAME)
            if not addresses and entry is not None:
                # A crash before the store learnt the result: CNI's cache has it; a
                # crash mid-ADD: the addresses asked for are the best guess.
                addresses = [i["address"] for i in (entry.result or {}).get("ips", [])] \
                    or list(caps.get("ips", []))
            self._del_in_netns(conflist, container_id, netns, tmpname, addresses, args, caps)
        netlink.delete_netns(netns)
        netlink.delete_link(tmpname)

    def _del_in_netns(self, conflist, container_id, netns, tmpname, addresses, args, caps):
        path = netlink.netns_path(netns)
        if not os.path.exists(path):
            # DEL must run in a netns: bridge removes masquerade rules only for
            # addresses it finds on the link there.
            path = netlink.create_netns(netns)
        try:
            if translate.del_needs_link(conflist.raw):
                netlink.take_back(netns, tmpname, IFNAME, addresses)
            else:
                # Deleted here, outside cni_runner's host-wide lock: a link's
                # deletion waits 15-40 ms for the kernel's RCU sync, which the
                # bridge plugin's DEL would otherwise spend holding that lock
                # while the next container's ADD waits for it.
                netlink.delete_link(tmpname)
        except Exception as e:
            log.warning("attachment %s: could not prepare its link for DEL: %s",
                        container_id[:12], e)
        rt = RuntimeConf(container_id, path, IFNAME, args, caps)
        try:
            self.runtime.delete(conflist, rt)
        except CNIError:
            if not addresses:
                raise
            # Guessed addresses whose masquerade chain was never made trip the
            # bridge plugin (nf_tables says "does not exist", which it does not
            # recognise); its first DEL removed the stand-in, so this one skips it.
            self.runtime.delete(conflist, rt)
