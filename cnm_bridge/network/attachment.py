"""One endpoint's life, in one room: record -> CNI ADD -> hand to Docker -> publish ->
revoke -> DEL -> forget.

The driver (CreateEndpoint, Join, ProgramExternalConnectivity, ...), the
deferred deleter and the reconciler all go through `Attachments`; nothing else
runs an endpoint's CNI or touches its netns and links.

Where CNI runs is decided at Join (`_choose`, strategies.py):
- handoff, the default on every engine: CNI ADD runs in a scratch netns and the
  interface is handed to Docker to move in (Docker names it and counts it).
- direct, only where wanted (-o cni.attach=direct, an interface name asked for, or
  a list whose settings a handoff loses) and possible (the container's netns is
  mounted at the SandboxKey at Join: Docker 28+ on `docker run`, any engine on
  `docker network connect`): CNI ADD runs in it, as the lowest free ethN.
"""

import ipaddress
import logging

from cni_runner import (CNIError, PluginError, RuntimeConf, conflist_from_bytes,
                        conflist_from_dict)

from .. import names
from ..errors import DriverError, NotFound, UnsupportedOption
from ..state.bootid import current_boot_id
from ..state.records import AttachMode, Endpoint, EndpointState
from . import answers, conflists, ports
from .deleter import Deleter, Pending
from .strategies import Direct, Handoff

log = logging.getLogger(__name__)


class Attachments:
    def __init__(self, store, runtime, host, defer_delete=False):
        self.store = store
        self.runtime = runtime
        self.host = host
        self.strategies = {AttachMode.HANDOFF: Handoff(host), AttachMode.DIRECT: Direct(host)}
        self.deleter = Deleter(self.release) if defer_delete else None

    # -- CreateEndpoint ---------------------------------------------------------------

    def record(self, spec, req):
        """Record an endpoint Docker created; nothing runs yet. -> the Endpoint.

        Its MAC is decided now, since Docker wants it in the answer: the user's, or
        one that follows the address (answers.mac_for), so a restarted container that
        keeps its address keeps its MAC, and peers' neighbour caches stay right.
        """
        ep = self.store.get_endpoint(req.endpoint_id)
        if ep is not None and ep.network_id == spec.id and ep.state != EndpointState.DELETING:
            return ep  # a replay
        if ep is not None:
            self.release(ep.id)  # left by an earlier attempt
        self._check_ready(spec)
        mac = req.mac or (answers.mac_for(req.address, req.address6) if spec.own_mac else "")
        ep = Endpoint(id=req.endpoint_id, network_id=spec.id, state=EndpointState.CREATED,
                      netns=names.netns_name(req.endpoint_id),
                      addresses=[str(a) for a in (req.address, req.address6) if a is not None],
                      mac=mac, mac_given=bool(req.mac), cni_args=answers.cni_args(mac),
                      ifname=req.ifname or "", boot_id=current_boot_id())
        self.store.add_endpoint(ep)
        return ep

    def _check_ready(self, spec):
        """CNI 1.1's STATUS of the network before anything is recorded or made: a plugin
        that says it cannot add (codes 50, 51) fails CreateEndpoint in its own words, and
        no row, netns or ADD is left to undo. Lists that cannot run at 1.1.0 have no
        STATUS and are not asked (not even a VERSION probe): this is every `docker run`."""
        conflist = conflist_from_dict(spec.conflist)
        if not conflist.may_run_at("1.1.0"):
            return
        try:
            self.runtime.status(conflist)
        except PluginError as e:
            raise DriverError(
                f"CNI network {spec.cni_name!r} cannot add a container now: plugin "
                f"{e.plugin} says {e.msg!r}" + (f" ({e.details})" if e.details else "")
                + f" [STATUS code {e.code}]; fix what it names, then run the container "
                "again (`pycni doctor` shows every network's STATUS)") from None

    @staticmethod
    def answer(ep):
        """{"Interface": {"MacAddress"?}}"""
        return answers.endpoint_answer(ep.mac_given, ep.mac)

    # -- Join -----------------------------------------------------------------------

    def attach(self, spec, ep, sandbox_key):
        """CNI ADD for a recorded endpoint, where the SandboxKey allows. -> Join's answer."""
        if ep.state == EndpointState.READY:
            return self.join_answer(spec, ep)  # a replay
        strategy = self._choose(spec, ep, sandbox_key)
        if strategy.mode == AttachMode.HANDOFF and spec.lost_settings and not spec.allow_loss:
            raise UnsupportedOption(conflists.handoff_refusal(spec.cni_name,
                                                              list(spec.lost_settings)))
        # Before the endpoint's lock: teardowns take endpoint locks, and two endpoints
        # may share a lock file.
        self._free_addresses(spec, ep)
        # The teardowns (gc, DeleteNetwork, the deleter) take this lock too: none runs
        # while the endpoint is half made, and each finds it as attach left it.
        with self.runtime.lock("endpoint", ep.id):
            ep = self.ready(ep.id)  # a teardown may have come first
            if ep.state != EndpointState.READY:
                self._attach(spec, ep, strategy, sandbox_key)
        return self.join_answer(spec, ep)

    def _free_addresses(self, spec, ep):
        """Before Join's ADD, nothing else on the endpoint's CNI list may hold one of its
        addresses (one list, one pool: a named conflist run by two Docker networks too).
        Docker's IPAM hands out only an address it thinks free, so an earlier holder is
        one Docker is done with: its deferred DEL is waited for; an endpoint whose
        DeleteEndpoint never came (pycni down past Docker's retries, or Docker forgot it)
        is released as gc would, else its interface stays up beside the new one, with
        the same address and MAC. If that fails, the Join is refused before anything of
        its own is made."""
        ips = ep.ips
        self.wait_deletions(lambda p: p.cni_name == spec.cni_name and p.addresses & ips,
                            "an earlier endpoint with this address")
        networks = [s.id for s in self.store.networks() if s.cni_name == spec.cni_name]
        for old in self.store.endpoints_holding(networks, ips):
            if old.id == ep.id:
                continue
            held = ", ".join(sorted(ips & old.ips))
            log.warning("endpoint %s: %s still held by endpoint %s (%s), which Docker is "
                        "done with (its DeleteEndpoint was lost, or its DEL failed): "
                        "releasing it", ep.id[:12], held, old.id[:12], old.state)
            try:
                self.release(old.id)
            except Exception as e:
                raise DriverError(
                    f"address {held} on CNI network {spec.cni_name!r} is still held by "
                    f"endpoint {old.id[:12]}, which Docker no longer knows, and releasing "
                    f"it failed: {e}; run `pycni gc --min-age 0` to finish its teardown, "
                    "then start the container again") from None

    def _attach(self, spec, ep, strategy, sandbox_key):
        conflist = self._endpoint_conflist(spec, ep, strategy.mode)
        ep.mode, ep.sandbox_key, ep.state = strategy.mode, sandbox_key, EndpointState.CREATING
        ep.tmp_ifname = names.tmp_ifname(ep.id) if strategy.mode == AttachMode.HANDOFF else ""
        ipam = None if spec.static_ipam else (conflists.main_ipam(conflist.raw) or {})
        ep.cap_args = answers.capability_args((ipam or {}).get("type"), ep.addresses, ep.mac)
        self.store.update_endpoint(ep)  # before its netns exists: reconciliation finds it
        try:
            path, ep.ifname = strategy.prepare(ep, sandbox_key)
            self.store.update_endpoint(ep)  # the ifname chosen, before any plugin runs
            result = self.runtime.add(conflist, RuntimeConf(ep.id, path, ep.ifname,
                                                            ep.cni_args, ep.cap_args))
            answers.check_addresses(spec.cni_name, ep.addresses,
                                    answers.container_ips(result, ep.ifname))
            mac = strategy.settle(ep, result, clear_gateway=self._gateway_given(result, spec))
            ep.mac = ep.mac or mac
            ep.result, ep.state = result, EndpointState.READY
            self.store.update_endpoint(ep)
        except Exception:
            self._undo_attach(spec, ep)
            raise
        log.info("endpoint %s on %s (%s, %s): %s", ep.id[:12], spec.cni_name, ep.mode,
                 ep.ifname, ", ".join(ep.addresses) or "no address")

    def _choose(self, spec, ep, sandbox_key):
        """Handoff unless direct is asked for or needed, and the netns is there to use.

        Docker names the interfaces its own drivers add (eth0, eth1, ...) from the ones it
        moved in itself; one a remote driver made in the sandbox is not among them, so a
        Docker network joined later, or at the next start, takes the same name and the
        container does not start ("file exists"). A handed-off interface Docker names
        itself. Direct is for lists whose settings a handoff loses, for an interface name
        the user asked for, and for networks made with -o cni.attach=direct.
        """
        wanted = spec.attach == AttachMode.DIRECT or (
            spec.attach == AttachMode.AUTO and bool(spec.lost_settings or ep.ifname))
        if wanted and sandbox_key and self.host.is_netns(sandbox_key):
            return self.strategies[AttachMode.DIRECT]
        return self.strategies[AttachMode.HANDOFF]

    def _gateway_given(self, result, spec):
        answer = answers.join_answer(result, None, spec.internal)
        return "Gateway" in answer or "GatewayIPv6" in answer

    def _undo_attach(self, spec, ep):
        try:
            self._cni_delete(self._endpoint_conflist(spec, ep, ep.mode), ep)
        except Exception as e:
            log.error("endpoint %s: cleanup after failed attach failed: %s", ep.id[:12], e)
        ep.state, ep.result, ep.mode, ep.tmp_ifname = EndpointState.CREATED, None, "", ""
        try:
            self.store.update_endpoint(ep)  # Docker sends DeleteEndpoint after a failed Join
        except NotFound:
            pass  # the row went meanwhile; the error that brought us here is the answer

    def join_answer(self, spec, ep):
        srcname = self.strategies[ep.mode].srcname(ep)
        return answers.join_answer(ep.result, srcname, spec.internal)

    def _endpoint_conflist(self, spec, ep, mode):
        """The list an endpoint's ADD and DEL run: the network's without port plugins, with
        `static` holding the addresses Docker's IPAM or pycni's allocated (generated lists,
        pycni's IPAM), and in the container's own netns a MAC setter where no plugin sets
        the MAC."""
        raw = spec.direct_list if mode == AttachMode.DIRECT else spec.endpoint_list
        if spec.static_ipam:
            raw = conflists.static_ipam(raw, [ipaddress.ip_interface(a) for a in ep.addresses],
                                        spec.gateways)
        return conflist_from_dict(raw)

    # -- published ports ------------------------------------------------------------------

    def publish(self, spec, ep, bindings):
        """Publish `-p`/`-P` through the list's portmap plugins, run on their own with the
        endpoint's result as prevResult (a cni_runner extension of libcni's ADD)."""
        if spec.internal or not bindings or ep.ports:
            return []  # nothing to publish, or a replay
        if spec.ports_list is None:
            raise UnsupportedOption(
                f"CNI network {spec.cni_name!r} has no portmap plugin (capabilities "
                "portMappings), so it cannot publish ports")
        self.wait_deletions(lambda p: p.has_ports, "an earlier endpoint's published ports")
        # One chooser at a time host-wide, so two containers never get one port.
        with self.runtime.lock("host-ports", "all"):
            taken = [m for other in self.store.endpoints() if other.id != ep.id
                     for m in other.ports]
            mappings = ports.choose(list(bindings), taken, self.host.port_in_use,
                                    self.host.ephemeral_ports(), spec.host_ip)
            self.runtime.add(conflist_from_dict(spec.ports_list),
                             RuntimeConf(ep.id, self.host.netns_path(ep.netns), ep.ifname,
                                         ep.cni_args, {"portMappings": mappings}),
                             prev_result=ep.result)
            ep.ports = mappings
            self.store.update_endpoint(ep)
        log.info("endpoint %s publishes %s", ep.id[:12], ports.describe(mappings))
        return mappings

    def revoke(self, spec, ep):
        """Unpublish (portmap's DEL); safe to repeat."""
        if spec is not None and spec.ports_list is not None:
            plist = conflist_from_dict(spec.ports_list)
            if self.runtime.has_attachment(plist.name, ep.id, ep.ifname or "eth0"):
                self.runtime.delete(plist, RuntimeConf(ep.id, self.host.netns_path(ep.netns),
                                                       ep.ifname or "eth0", ep.cni_args,
                                                       {"portMappings": ep.ports}))
        if ep.ports:
            log.info("endpoint %s unpublishes %s", ep.id[:12], ports.describe(ep.ports))
            ep.ports = []
            self.store.update_endpoint(ep)

    # -- DeleteEndpoint and teardown ------------------------------------------------

    def forget(self, endpoint_id):
        """DeleteEndpoint: ports go now; the CNI DEL after the answer when deferred."""
        ep = self.store.get_endpoint(endpoint_id)
        if ep is None:
            return
        if self.deleter is None:
            self.release(ep.id)
            return
        try:
            self.revoke(self.store.get_network(ep.network_id), ep)
            ep.state = EndpointState.DELETING
            self.store.update_endpoint(ep)
        except NotFound:
            return  # a teardown (gc, DeleteNetwork) got there first
        spec = self.store.get_network(ep.network_id)
        self.deleter.submit(Pending(ep.id, ep.network_id, spec.cni_name if spec else "",
                                    ep.ips,
                                    bool(ep.ports)))

    def wait_deletions(self, predicate, what):
        if self.deleter is not None and not self.deleter.wait_for(predicate):
            raise DriverError(f"timed out waiting for the CNI DEL of {what}")

    def pending(self):
        """The deferred DELs not done yet."""
        return self.deleter.pending() if self.deleter is not None else []

    def drain(self, timeout):
        """Wait for the deferred DELs (at a graceful stop)."""
        if self.deleter is not None:
            self.deleter.wait_for(lambda p: True, timeout=timeout)

    def release(self, endpoint_id, unchanged_since=None):
        """CNI DEL of an endpoint and removal of all it made, then its record; safe to repeat.
        False if there was nothing to do, or (`unchanged_since`, gc's cutoff) its state
        changed after that time: gc judged an older state.

        The deferred deleter, DeleteNetwork and reconciliation may reach the same
        endpoint at once: one does the work, the others find its record gone.
        """
        with self.runtime.lock("endpoint", endpoint_id):
            ep = self.store.get_endpoint(endpoint_id)
            if ep is None or (unchanged_since is not None and ep.changed_unix > unchanged_since):
                return False
            if ep.state != EndpointState.DELETING:
                ep.state = EndpointState.DELETING
                self.store.update_endpoint(ep)
            spec = self.store.get_network(ep.network_id)
            self.revoke(spec, ep)
            if ep.mode:  # else CNI never ran for it
                conflist = (self._endpoint_conflist(spec, ep, ep.mode) if spec
                            else self._cached_conflist(ep))
                self._cni_delete(conflist, ep)
            self.store.delete_endpoint(ep.id)
        log.info("endpoint %s deleted", ep.id[:12])
        return True

    def _cached_conflist(self, ep):
        """Its network's record is gone (reconciliation): the list CNI's cache kept."""
        for entry in self.runtime.cached_attachments():
            if entry.container_id == ep.id and entry.ifname == ep.ifname:
                try:
                    return conflist_from_bytes(entry.config, "cached config")
                except CNIError:
                    return None
        return None

    def release_orphan(self, entry):
        """DEL a cached CNI attachment that has no endpoint record (reconciliation)."""
        conflist = conflist_from_bytes(entry.config, "cached config")
        ep = Endpoint(id=entry.container_id, network_id="", state=EndpointState.DELETING,
                      netns=names.netns_name(entry.container_id),
                      tmp_ifname=names.tmp_ifname(entry.container_id), ifname=entry.ifname,
                      mode=AttachMode.HANDOFF if entry.ifname == "eth0" else AttachMode.DIRECT,
                      cni_args=list(entry.cni_args), cap_args=dict(entry.capability_args))
        self._cni_delete(conflist, ep)

    def _cni_delete(self, conflist, ep):
        """DEL an attachment in its netns, then remove the netns and the handed-off link.

        No cache entry means no plugin ever ran (cni_runner caches its intent before
        the first ADD) or DEL already finished: nothing to DEL then.
        """
        strategy = self.strategies[ep.mode or AttachMode.HANDOFF]
        if conflist is not None and self.runtime.has_attachment(conflist.name, ep.id, ep.ifname):
            addresses = list(ep.addresses) or self._cached_addresses(conflist, ep)
            path = strategy.before_del(ep, conflist.raw, addresses)
            rt = RuntimeConf(ep.id, path, ep.ifname, ep.cni_args, ep.cap_args)
            try:
                self.runtime.delete(conflist, rt)
            except CNIError:
                if not addresses:
                    raise
                # Guessed addresses whose masquerade chain was never made trip the
                # bridge plugin (nf_tables says "does not exist", which it does not
                # recognise); its first DEL removed the stand-in, so this one skips it.
                self.runtime.delete(conflist, rt)
        strategy.cleanup(ep)

    def _cached_addresses(self, conflist, ep):
        # A crash before the store learnt the result: CNI's cache has it; a crash
        # mid-ADD: the addresses asked for are the best guess.
        entry = self.runtime.cached_attachment(conflist.name, ep.id, ep.ifname)
        if entry is None:
            return []
        if entry.result:
            return [str(a) for a in answers.container_ips(entry.result)]
        return list(entry.capability_args.get("ips", []))

    # -- CHECK ----------------------------------------------------------------------------

    def check(self, spec, ep):
        """CNI CHECK of an attached endpoint, in the netns CNI configured.

        -> (True, "") when the chain says all is as it made it, (False, why) when a
        plugin says otherwise, (None, why) when CHECK cannot run: after a handoff the
        interface lives under Docker's settings in a netns CNI never saw.
        """
        if ep.state != EndpointState.READY:
            return None, f"endpoint is {ep.state}, not attached"
        if ep.mode != AttachMode.DIRECT:
            return None, ("attached through the scratch-netns handoff (the default): CNI's "
                          "netns is not the container's, so CHECK has nothing to look at; "
                          "CHECK needs a direct attachment: a network made with -o "
                          "cni.attach=direct, on Docker 28+ or through `docker network "
                          "connect`")
        if not self.host.netns_exists(ep.netns):
            return False, f"the container's netns ({ep.sandbox_key}) is gone"
        conflist = self._endpoint_conflist(spec, ep, ep.mode)
        try:
            ran = self.runtime.check(conflist, RuntimeConf(ep.id, self.host.netns_path(ep.netns),
                                                           ep.ifname, ep.cni_args, ep.cap_args))
        except CNIError as e:
            return False, str(e)
        if not ran:
            return None, (f"CNI network {spec.cni_name!r} does not run CHECK (version below "
                          "0.4.0, or disableCheck)")
        return True, ""

    # -- reading ------------------------------------------------------------------------

    def oper_info(self, ep, spec):
        """What Docker's EndpointOperInfo gets (shown nowhere by Docker)."""
        value = {"cni.network": spec.cni_name if spec else "", "netns": ep.netns,
                 "state": ep.state, "mode": ep.mode, "ifname": ep.ifname}
        if ep.result:
            value["ips"] = [str(a) for a in answers.container_ips(ep.result, ep.ifname)]
        if ep.mac:
            value["mac"] = ep.mac
        if ep.ports:
            value["portMappings"] = ep.ports
        return {"Value": value}

    def ready(self, endpoint_id):
        ep = self.store.get_endpoint(endpoint_id)
        if ep is None or ep.state == EndpointState.DELETING:
            raise NotFound(f"endpoint {endpoint_id[:12]} is not known to pycni")
        return ep
