"""Applying hostrules' rules with the iptables commands, by exact spec.

Each rule is found again by its full spec (comment included), so adding is
idempotent and removing takes every copy. Side effects only.
"""

import subprocess


class IptablesError(Exception):
    """A rule could not be added; the message names the command and what it was for."""


def run(cmd, table, *args):
    return subprocess.run([cmd, "-w", "-t", table, *args], capture_output=True, text=True,
                          timeout=60)


def ensure_chain(chain):
    """Create a chain unless it exists."""
    if run(chain_command(chain), chain.table, "-n", "-L", chain.name).returncode != 0:
        p = run(chain_command(chain), chain.table, "-N", chain.name)
        if p.returncode != 0 and "exists" not in p.stderr:
            raise IptablesError(f"{chain_command(chain)}: cannot create chain {chain.name} "
                                f"in table {chain.table}: {p.stderr.strip()}")


def delete_chain(chain):
    """Flush and delete a chain; nothing if it is absent or still referenced."""
    run(chain_command(chain), chain.table, "-F", chain.name)
    run(chain_command(chain), chain.table, "-X", chain.name)


def chain_command(chain):
    return "ip6tables" if chain.family == 6 else "iptables"


def ensure(rule, what):
    """Add a rule unless it is there: at its chain's head or tail, as the rule says."""
    if run(rule.command, rule.table, "-C", rule.chain, *rule.args).returncode == 0:
        return
    where = ["-I", rule.chain, "1"] if rule.head else ["-A", rule.chain]
    p = run(rule.command, rule.table, *where, *rule.args)
    if p.returncode != 0:
        raise IptablesError(f"{rule.command}: {what}: {p.stderr.strip()}")


def remove(rule):
    """Delete every copy of a rule."""
    while run(rule.command, rule.table, "-D", rule.chain, *rule.args).returncode == 0:
        pass
