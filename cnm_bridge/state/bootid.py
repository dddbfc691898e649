"""The kernel's boot id: endpoints made in an earlier boot are gone with their interfaces.

PYCNI_BOOT_ID overrides it, so that a test can emulate a reboot without one.
"""

import functools
import os


def current_boot_id():
    return os.environ.get("PYCNI_BOOT_ID") or _kernel_boot_id()


@functools.lru_cache(maxsize=1)
def _kernel_boot_id():
    # Read once: it cannot change while this process lives.
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
