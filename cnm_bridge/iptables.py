"""The few iptables rules pycni owns itself (isolation, masquerade), by exact spec.

Each rule carries a comment naming its network and is found again by its full
spec, so adding is idempotent and removing takes every copy. Side effects only.
"""

import subprocess


class IptablesError(Exception):
    """A rule could not be added; the message names the command and what it was for."""


def run(cmd, table, *args):
    return subprocess.run([cmd, "-w", "-t", table, *args], capture_output=True, text=True,
                          timeout=60)


def ensure(cmd, table, chain, rule, what, insert=False):
    """Add `rule` to `chain` unless it is there: at its head with insert, else at its tail."""
    if run(cmd, table, "-C", chain, *rule).returncode == 0:
        return
    where = ["-I", chain, "1"] if insert else ["-A", chain]
    p = run(cmd, table, *where, *rule)
    if p.returncode != 0:
        raise IptablesError(f"{cmd}: {what}: {p.stderr.strip()}")


def remove(cmd, table, chain, rule):
    """Delete every copy of `rule` from `chain`."""
    while run(cmd, table, "-D", chain, *rule).returncode == 0:
        pass
