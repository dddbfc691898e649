"""Applying hostrules' rules with the iptables commands, by exact spec.

Each rule is found again by its full spec (comment included), so adding is
idempotent and removing takes every copy. Side effects only.
"""

import re
import shlex
import subprocess

# A network rule's comment: its tag (`pycni-` and 12 hex of the network's id), a space.
TAG_RE = re.compile(r'--comment "?(pycni-[0-9a-z]{12}) ')


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


def _saved_rules(cmd, table):
    """The `-A ...` lines of a table, as iptables-save prints them; [] without the command."""
    try:
        saved = subprocess.run([f"{cmd}-save", "-t", table], capture_output=True, text=True,
                               timeout=60).stdout
    except OSError:
        return []  # no ip6tables on this host
    return [line for line in saved.splitlines() if line.startswith("-A ")]


def _tagged(line, tag):
    return f'--comment "{tag}' in line or f"--comment {tag}" in line


def has_tagged(cmd, tables, tag):
    """Whether a rule of these tables has a comment starting with `tag`."""
    return any(_tagged(line, tag) for table in tables for line in _saved_rules(cmd, table))


def remove_tagged(tag, tables=("filter", "nat", "mangle")):
    """Delete every rule, IPv4 and IPv6, whose comment starts with `tag` (a network's
    rule tag and a space): for a network whose spec, and so whose exact rules, are lost."""
    removed = 0
    for cmd in ("iptables", "ip6tables"):
        for table in tables:
            for line in _saved_rules(cmd, table):
                if _tagged(line, tag + " ") and run(
                        cmd, table, "-D", *shlex.split(line)[1:]).returncode == 0:
                    removed += 1
    return removed


def tags(tables=("filter", "nat", "mangle")):
    """The network tags of every pycni rule on the host, IPv4 and IPv6."""
    found = set()
    for cmd in ("iptables", "ip6tables"):
        for table in tables:
            for line in _saved_rules(cmd, table):
                m = TAG_RE.search(line)
                if m:
                    found.add(m.group(1))
    return found
