"""Errors the plugin API turns into {"Err": ...} / {"Error": ...} answers.

Their text is shown to the user by the docker CLI, so it says what is wrong
and, where there is one, what to do about it.
"""


class DriverError(Exception):
    """Base class: anything the user can act on."""


class BadRequest(DriverError):
    """A request body that does not match the protocol."""


class UnsupportedOption(DriverError):
    """A network option pycni does not know or cannot honour."""


class NotFound(DriverError):
    """An id pycni has no record of."""


class HostError(Exception):
    """Something on the host (netns, links, iptables, sockets) could not be done."""
