"""The scripts in benchmarks/ (not a package) loaded as modules, for their unit tests."""

import importlib.util
import os

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
