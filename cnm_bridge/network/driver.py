"""The network driver's operations: one method per protocol call.

Networks are this module's own job (CreateNetwork makes a NetworkSpec and the
network's host rules, DeleteNetwork undoes both); everything about an endpoint
is attachment.Attachments' (docs/architecture.md walks a `docker run`).
"""

import logging
import os
import shutil
import time

from cni_runner import CNIError, conflist_from_dict, load_by_name

from .. import names
from ..errors import DriverError, HostError, NotFound, UnsupportedOption
from ..host import hostrules
from ..state.records import EndpointState, NetworkKind
from . import conflists, netspec, options

log = logging.getLogger(__name__)


class Driver:
    # How long DeleteNetwork waits for a bridge's last ports to go before keeping it.
    PORTS_DRAIN_SECONDS = 5

    def __init__(self, settings, store, runtime, host, attachments):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.host = host
        self.attachments = attachments

    # -- networks -------------------------------------------------------------

    def capabilities(self):
        """{"Scope","ConnectivityScope"}.

        Scope (where addresses are allocated): "local", each host's dockerd; "global",
        the swarm manager, cluster-wide (and it calls AllocateNetwork). ConnectivityScope
        is always "global", as for Docker's macvlan: CNI plugins can reach across hosts,
        and Docker gives swarm networks of such a driver cluster-wide service discovery
        (`tasks.<service>` on every node).
        """
        return {"Scope": self.settings.scope, "ConnectivityScope": "global"}

    def allocate_network(self, req):
        """The swarm manager's AllocateNetwork (global scope) -> {"Options": {...}}.

        The options are checked here, so a mistake fails `docker network create` on the
        manager rather than each node's first task. Nothing is made: each node gets
        CreateNetwork when a task lands there, with the options answered here (Docker
        hands nodes the driver's answer, not the user's options).
        """
        netspec.refuse_null_ipam(req.ipv4_data, req.ipv6_data)
        options.plan_network(req.options)
        return {"Options": dict(req.options)}

    def create_network(self, req):
        """Plan, check and record a network; install its host rules. Docker sends this once."""
        with self.runtime.lock("network", req.network_id):
            if self.store.get_network(req.network_id):
                return {}  # a replay: the network is already recorded
            spec = self._make_spec(req)
            # Recorded first: a kill before the rules are in leaves a record, whose rules
            # start-up installs (and gc removes it if dockerd never got the network);
            # rules first would leave rules that no record knows.
            self.store.add_network(spec)
            try:
                self.install_host_rules(spec)
            except Exception:
                self._remove_host_rules(spec)
                self.store.delete_network(spec.id)
                raise
        log.info("network %s: CNI network %s (%s)", req.network_id[:12], spec.cni_name,
                 spec.mode)
        return {}

    def _make_spec(self, req):
        netspec.refuse_null_ipam(req.ipv4_data, req.ipv6_data)
        if not req.ipv4_data and not req.ipv6_only:
            raise UnsupportedOption(
                "the network has no IPv4 subnet: Docker sends none only when the network "
                "is IPv6-only (--ipv4=false, Docker 28+); give it --subnet")
        if req.ipv6_only and not req.ipv6_data:
            raise UnsupportedOption("an IPv6-only network (--ipv4=false) needs --ipv6 and an "
                                    "IPv6 --subnet")
        plan = options.plan_network(req.generic)
        ipam = netspec.ipam_mode(req.ipv4_data, req.ipv6_data)
        if plan.mode == NetworkKind.NAMED:
            try:
                raw = load_by_name(self.settings.conf_dir, plan.conflist_name).raw
            except CNIError as e:
                raise DriverError(str(e)) from None
            if ipam == "docker":
                conflists.check_docker_ipam(plan.conflist_name, raw, req.ipv4_data,
                                            req.ipv6_data, plan.ip_range)
        else:
            if plan.cni_type in ("macvlan", "ipvlan"):
                parent = plan.parent
                if not self.host.link_exists(parent):
                    raise UnsupportedOption(f"parent interface {parent!r} does not exist")
            raw = conflists.generate(names.cni_network_name(req.network_id),
                                     names.bridge_name(req.network_id), plan, req.ipv4_data,
                                     req.ipv6_data, req.internal)
        bridge = conflists.bridge_of(raw)
        if bridge and plan.mode != NetworkKind.NAMED:
            self._refuse_foreign_link(bridge, req.network_id)
        owned = [bridge] if bridge and not self.host.link_exists(bridge) else []
        spec = netspec.make_spec(req.network_id, plan, raw, req.ipv4_data, req.ipv6_data,
                                 req.internal, req.ipv6, ipam, owned_links=owned)
        try:
            self.runtime.validate(conflist_from_dict(spec.conflist,
                                                     f"network {req.network_id[:12]}"))
        except CNIError as e:
            raise DriverError(str(e)) from None
        if spec.direct_list != spec.endpoint_list:
            try:
                self.runtime.validate(conflist_from_dict(spec.direct_list))
            except CNIError as e:
                # No tuning plugin to set the MAC in the container's own netns: Docker's
                # inspect may then show another MAC than the interface's there.
                log.warning("network %s: no MAC setter for CNI in the container's netns "
                            "(%s)", req.network_id[:12], e)
                spec = netspec.without_direct_mac_setter(spec)
        return spec

    def _refuse_foreign_link(self, bridge, network_id):
        """A generated network's bridge is pycni's to make: its isolation rules (and
        --internal's DROP) would cut off a host link that already has another job. A
        conflist's author may name any bridge: those lists get no isolation rules."""
        kind = self.host.link_kind(bridge)
        if kind is None or self._pycni_made(bridge, network_id):
            return
        raise UnsupportedOption(
            f"host link {bridge!r} ({kind}) exists and pycni did not make it: pycni would "
            f"install its isolation rules on it; give com.docker.network.bridge.name a name "
            f"no host link has (or leave it out), or attach to that bridge through a "
            f"conflist (-o cni.network=NAME)")

    def _pycni_made(self, link, network_id):
        # The network's own pc-<id> (left by a lost state dir), or a recorded network's.
        return link == names.bridge_name(network_id) or self._link_used_elsewhere(
            link, network_id)

    def delete_network(self, ref):
        return self.remove_network(ref.network_id)

    def remove_network(self, network_id):
        """DeleteNetwork's work, also for reconciliation (a network dockerd forgot)."""
        # Under the network's lock: `pycni gc` (another process) may be installing its
        # rules again right now.
        with self.runtime.lock("network", network_id):
            return self._delete_network(network_id)

    def _delete_network(self, network_id):
        spec = self.store.get_network(network_id)
        if spec is None:
            # A retry after a failure Docker only logs, or a network whose record was
            # lost with the state dir: what pycni would have made for it is found by name.
            self._remove_unrecorded(network_id)
            return {}
        for ep in self.store.endpoints(spec.id):
            self.attachments.release(ep.id)
        for link in spec.owned_links:
            if not self._ports_gone(link):
                log.warning("network %s: bridge %s still has ports; kept", spec.id[:12], link)
            elif self.host.link_exists(link) and not self._link_used_elsewhere(link, spec.id):
                self.host.delete_link(link)
        self._remove_host_rules(spec)
        if spec.generated and spec.ipam_dir:
            shutil.rmtree(os.path.join(spec.ipam_dir, spec.cni_name), ignore_errors=True)
        self.store.delete_network(spec.id)
        self._remove_unused_base_rules()
        log.info("network %s deleted", spec.id[:12])
        return {}

    def _remove_unrecorded(self, network_id):
        bridge = names.bridge_name(network_id)
        removed = []
        if (self.host.link_exists(bridge) and not self._link_used_elsewhere(bridge, network_id)
                and self._ports_gone(bridge)):
            self.host.delete_link(bridge)
            removed.append(f"bridge {bridge}")
        rules = self.host.remove_tagged_rules(names.rule_tag(network_id))
        if rules:
            removed.append(f"{rules} iptables rules")
        if removed:
            self._remove_unused_base_rules()
            log.warning("network %s had no record in %s (state dir lost?): removed its %s "
                        "by name", network_id[:12], self.store.path, " and ".join(removed))

    def _ports_gone(self, bridge):
        """Whether the bridge has no port, waiting a little: a container's veth goes with
        its netns, which the kernel tears down after Docker has already moved on to
        DeleteNetwork."""
        deadline = time.monotonic() + self.PORTS_DRAIN_SECONDS
        while self.host.bridge_has_ports(bridge):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def reinstall_host_rules(self, network_id):
        """A stored network's rules again (at start, by `pycni gc`): iptables rules do not
        survive a reboot, the store does. False if the network is gone by now."""
        with self.runtime.lock("network", network_id):
            spec = self.store.get_network(network_id)
            if spec is None:
                return False
            self.install_host_rules(spec)
            return True

    def install_host_rules(self, spec):
        """The network's own iptables rules; idempotent."""
        rules = hostrules.network_rules(spec)
        if not rules:
            return
        try:
            if hostrules.needs_bridge_netfilter(spec):
                self.host.enable_bridge_netfilter()
            self.host.install_rules(rules, f"network {spec.id[:12]}")
        except HostError as e:
            raise DriverError(str(e)) from None

    def _remove_host_rules(self, spec):
        self.host.remove_rules(hostrules.network_rules(spec))

    def _remove_unused_base_rules(self):
        in_use = hostrules.families_in_use(self.store.networks())
        for family in (4, 6):
            if family not in in_use:
                self.host.remove_base_rules(family)

    def _link_used_elsewhere(self, link, network_id):
        return any(link in n.owned_links or n.bridge == link
                   for n in self.store.networks() if n.id != network_id)

    def network(self, network_id):
        spec = self.store.get_network(network_id)
        if spec is None:
            raise NotFound(f"network {network_id[:12]} is not known to pycni")
        return spec

    # -- endpoints ------------------------------------------------------------

    def create_endpoint(self, req):
        spec = self.network(req.network_id)
        if req.options:
            # `docker network connect --driver-opt k=v`: nothing here takes one yet.
            raise UnsupportedOption(
                f"unsupported endpoint option(s): {', '.join(sorted(req.options))}")
        return self.attachments.answer(self.attachments.record(spec, req))

    def join(self, req):
        spec = self.network(req.network_id)
        ep = self.attachments.ready(req.endpoint_id)
        return self.attachments.attach(spec, ep, req.sandbox_key)

    def leave(self, ref):
        return {}  # the interface is still in the sandbox; DeleteEndpoint cleans up

    def delete_endpoint(self, ref):
        self.attachments.forget(ref.endpoint_id)
        return {}

    def oper_info(self, ref):
        """{"Value": {...}}: shown nowhere by Docker, useful with the plugin API itself."""
        ep = self.store.get_endpoint(ref.endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {ref.endpoint_id[:12]} is not known to pycni")
        return self.attachments.oper_info(ep, self.store.get_network(ep.network_id))

    def program_external_connectivity(self, req):
        """Publish `-p`/`-P` ports. Sent for the sandbox's gateway endpoint; Docker 29
        sends it again whenever that endpoint changes: a repeat publishes nothing new."""
        spec = self.network(req.network_id)
        ep = self.attachments.ready(req.endpoint_id)
        if ep.state != EndpointState.READY:
            raise NotFound(f"endpoint {req.endpoint_id[:12]} is not attached")
        self.attachments.publish(spec, ep, req.port_mappings)
        return {}

    def revoke_external_connectivity(self, req):
        ep = self.store.get_endpoint(req.endpoint_id)
        if ep is not None:
            self.attachments.revoke(self.store.get_network(ep.network_id), ep)
        return {}
