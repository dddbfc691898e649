"""The kernel's boot id: endpoints made in an earlier boot are gone with their interfaces.

PYCNI_BOOT_ID overrides it, so that a test can emulate a reboot without one.
"""

import os


def current_boot_id():
    override = os.environ.get("PYCNI_BOOT_ID")
    if override:
        return override
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
