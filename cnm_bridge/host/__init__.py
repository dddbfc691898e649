"""The host boundary: netns, links, iptables (and the rules pycni keeps there), the route
table, the state dir's safety. Below the network logic, which reaches the host only
through `host.Host`."""
