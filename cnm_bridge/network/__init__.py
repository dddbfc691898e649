"""The network logic: Docker's options and CNI lists -> specs, endpoints' lives, IPAM,
ports, answers, the deferred DEL and reconciliation."""
