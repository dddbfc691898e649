"""cnm_bridge: Docker's remote network and IPAM driver API, answered with CNI plugin runs.

Floors, each importing only those below it (tests/unit/test_layers.py keeps them):
errors, names (the ground) < state < host < network < docker, ops < compose, app, cli,
settings. docs/architecture.md draws them.
"""
