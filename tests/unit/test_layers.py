"""The floors of cnm_bridge: no module imports one of a higher floor.

ground (errors, names) < state < host < network < docker, ops < the wiring (compose, app,
cli, settings). docker and ops stand side by side and import neither the other. Read from
each module's own imports (ast), function-level ones included."""

import ast
import os
import shutil

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "cnm_bridge")

# folder or root module -> its floor
FLOORS = {
    "__init__": 0,  # the package's face: a docstring
    "errors": 0, "names": 0,
    "state": 1,
    "host": 2,
    "network": 3,
    "docker": 4, "ops": 4,
    "compose": 5, "app": 5, "cli": 5, "settings": 5,
}
FOLDERS = {"state", "host", "network", "docker", "ops"}


def room(dotted):
    """'cnm_bridge.state.store' -> 'state'; 'cnm_bridge.errors' -> 'errors'."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path, dotted):
    """The cnm_bridge modules and packages `path` (module `dotted`) imports."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = dotted.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cnm_bridge":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "cnm_bridge":
                continue
            if module == "cnm_bridge":  # `from cnm_bridge import a, b` (or `from . import`)
                for alias in node.names:
                    yield node.lineno, module + "." + alias.name
            else:
                yield node.lineno, module


def modules(root=ROOT):
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3]
                dotted = rel.replace(os.sep, ".")
                yield path, dotted


def upward_imports(root=ROOT):
    found = []
    for path, dotted in modules(root):
        mine = room(dotted)
        for line, target in imports_of(path, dotted):
            theirs = room(target)
            if theirs == mine or theirs not in FLOORS:
                continue
            sideways = FLOORS[theirs] == FLOORS[mine] and {mine, theirs} <= FOLDERS
            if FLOORS[theirs] > FLOORS[mine] or sideways:
                found.append(f"{dotted}:{line} imports {target} "
                             f"(floor {FLOORS[theirs]} from floor {FLOORS[mine]})")
    return found


def test_every_module_has_a_floor():
    assert {room(d) for _, d in modules()} <= set(FLOORS)


def test_no_import_runs_up_a_floor():
    assert upward_imports() == []


@pytest.mark.parametrize("path, line", [
    ("state/records.py", "from ..network import options"),
    ("host/netns.py", "    from ..ops.render import render"),
    ("docker/api.py", "from cnm_bridge.ops import status"),
    ("ops/status.py", "    from ..docker import server"),
    ("names.py", "from .state.store import Store"),
])
def test_a_planted_upward_import_is_found(tmp_path, path, line):
    copy = tmp_path / "cnm_bridge"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / path, "a") as f:
        f.write("\n\ndef _planted():\n" + (line if line.startswith(" ") else "    pass\n" + line)
                + "\n")
    [found] = upward_imports(str(copy))
    assert found.startswith("cnm_bridge." + path[:-3].replace("/", ".") + ":")
