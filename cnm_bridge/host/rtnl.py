"""The few rtnetlink requests pycni makes, encoded here with struct.

Each is one message and its ACK on a socket of the calling thread's netns. pyroute2
costs the worker ~9 MB, a sixth of its memory, once imported; these requests are small
enough not to need it.
"""

import errno
import fcntl
import os
import socket
import struct

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELROUTE = 25
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_NET_NS_FD = 28
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_OIF = 4
RT_TABLE_MAIN = 254
RT_SCOPE_NOWHERE = 255
SIOCGIFHWADDR = 0x8927

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table,
#                                        protocol, scope, type, flags


class RtnlError(OSError):
    pass


def _attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _request(kind, body, flags=0):
    """Send one request, wait for its ACK; raises RtnlError with the kernel's errno."""
    msg = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                       1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(msg)
        while True:
            reply = sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(reply):
                length, mtype, _, seq, _ = _HEADER.unpack_from(reply, offset)
                if mtype == NLMSG_ERROR and seq == 1:
                    (error,) = struct.unpack_from("=i", reply, offset + _HEADER.size)
                    if error:
                        raise RtnlError(-error, os.strerror(-error))
                    return
                offset += max(length, _HEADER.size) + (-length % 4)


def move_link(index, newname, netns_fd):
    """Rename link `index` of this thread's netns and move it to the netns of `netns_fd`."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    body += _attr(IFLA_IFNAME, newname.encode() + b"\0")
    body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
    _request(RTM_NEWLINK, body)


def add_veth(name, peer):
    """A veth pair `name`/`peer` in this thread's netns, down."""
    peer_info = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(peer))
    info = (_attr(IFLA_INFO_KIND, b"veth")
            + _attr(IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER, peer_info)))
    body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
            + _attr(IFLA_LINKINFO | NLA_F_NESTED, info))
    _request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)


def add_address(index, iface):
    """Add `iface` (an ipaddress interface: address and prefix) to link `index`."""
    family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
    packed = iface.ip.packed
    body = _IFADDR.pack(family, iface.network.prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    _request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


def _name(name):
    return name.encode() + b"\0"


def delete_link(index):
    _request(RTM_DELLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))


def delete_default_routes(index):
    """Delete every default route through link `index` (IPv4 and IPv6); the families
    that had one."""
    removed = []
    for family in (socket.AF_INET, socket.AF_INET6):
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 0, RT_SCOPE_NOWHERE, 0, 0)
        body += _attr(RTA_OIF, struct.pack("=I", index))
        while True:
            try:
                _request(RTM_DELROUTE, body)
            except RtnlError as e:
                if e.errno in (errno.ESRCH, errno.ENOENT):
                    break
                raise
            removed.append(family)
    return removed


def link_mac(name):
    """The MAC of link `name` in this thread's netns, or "" if there is no such link."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifreq = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR,
                                struct.pack("16s16x", name.encode()[:15]))
        except OSError:
            return ""
    return ":".join(f"{b:02x}" for b in ifreq[18:24])


def link_names():
    """The names of this thread's netns's links."""
    return [name for _, name in socket.if_nameindex()]


