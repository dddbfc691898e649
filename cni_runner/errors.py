"""Exceptions raised by cni_runner.

Plugin failures keep the spec's error object (code, msg, details) plus the name
of the plugin that failed, so callers can tell a user which binary said what.
"""

# Error codes from the CNI spec ("Error" section).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class CNIError(Exception):
    """Base class of every error cni_runner raises."""


class ConfigError(CNIError):
    """A network configuration (file, list or field) is invalid."""


class NotFoundError(ConfigError):
    """No configuration of that name exists in the conf dir."""


class PluginNotFoundError(CNIError):
    """A plugin `type` is not an executable in any plugin dir."""


class VersionError(CNIError):
    """The list's versions and the plugins' versions have nothing in common."""


class ResultError(CNIError):
    """A plugin printed something that is not a valid result."""


class AlreadyAddedError(CNIError):
    """ADD was asked for an attachment that already has a cached result."""


class NotAddedError(CNIError):
    """CHECK was asked for an attachment that was never added."""


class PluginError(CNIError):
    """A plugin exited non-zero, timed out or could not be run."""

    def __init__(self, plugin, code, msg, details="", command=""):
        self.plugin = plugin
        self.code = code
        self.msg = msg
        self.details = details
        self.command = command
        text = f"CNI plugin {plugin} failed"
        if command:
            text += f" on {command}"
        text += f": {msg}"
        if details:
            text += f" ({details})"
        if code:
            text += f" [code {code}]"
        super().__init__(text)

    def to_dict(self):
        return {"code": self.code, "msg": self.msg, "details": self.details}
