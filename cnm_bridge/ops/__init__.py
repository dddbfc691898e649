"""Operator commands behind `pycni`: status, inspect, check, doctor, ports; what they ask
dockerd."""
