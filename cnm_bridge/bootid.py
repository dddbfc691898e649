"""The kernel's boot id: endpoints made in an earlier boot are gone with their interfaces."""


def current_boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
