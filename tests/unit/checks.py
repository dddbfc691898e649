"""Assertions the unit tests share."""

import pytest

from cnm_bridge.errors import UnsupportedOption


def refused(fn, *args, words=()):
    """fn(*args) must raise UnsupportedOption whose message holds every one of `words`."""
    with pytest.raises(UnsupportedOption) as info:
        fn(*args)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg
