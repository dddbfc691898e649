"""cni_runner: a CNI runtime library (the Python counterpart of libcni).

It knows nothing of Docker. Typical use:

    from cni_runner import CNIRuntime, RuntimeConf, load_by_name
    rt = CNIRuntime(["/usr/lib/cni"], "/var/lib/myapp/cni")
    net = load_by_name("/etc/cni/net.d", "mynet")
    result = rt.add(net, RuntimeConf("ctr1", "/run/netns/ctr1", "eth0"))
    rt.delete(net, RuntimeConf("ctr1", "/run/netns/ctr1", "eth0"))
"""

from .cache import CacheEntry, ResultCache
from .config import (NetworkConfigList, PluginConfig, conflist_from_bytes, conflist_from_dict,
                     load_all, load_by_name, validate_container_id, validate_ifname,
                     validate_name)
from .errors import (AlreadyAddedError, CNIError, ConfigError, NotAddedError, NotFoundError,
                     PluginError, PluginNotFoundError, ResultError, VersionError)
from .result import canonical as canonical_result, convert
from .runtime import CNIRuntime, RuntimeConf

__all__ = [
    "AlreadyAddedError", "CNIError", "CNIRuntime", "CacheEntry", "ConfigError",
    "NetworkConfigList", "NotAddedError", "NotFoundError", "PluginConfig", "PluginError",
    "PluginNotFoundError", "ResultCache", "ResultError", "RuntimeConf", "VersionError",
    "canonical_result", "conflist_from_bytes", "conflist_from_dict", "convert", "load_all",
    "load_by_name",
    "validate_container_id", "validate_ifname", "validate_name",
]
