"""What pycni asks dockerd, outside any request from it: `pycni gc` and the operator
commands, through the Docker SDK.

The API version is negotiated (`version="auto"`): Docker 20.10 speaks 1.41 at
most, 29 refuses clients below 1.44, and the SDK's own default is neither.
"""

# Every call's deadline: dockerd looks for a missing plugin for ~15 s before it answers
# a call that names one (an inspect of a network whose driver is not running).
TIMEOUT = 40


class DockerAPI:
    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, timeout=TIMEOUT):
        """dockerd at DOCKER_HOST (default its unix socket); raises if it does not answer
        (negotiating the API version asks it)."""
        import docker
        return cls(docker.from_env(version="auto", timeout=timeout))

    def network(self, network_id):
        """The network's inspect answer, or None if dockerd has no such network."""
        import docker.errors
        try:
            return self.client.api.inspect_network(network_id)
        except docker.errors.NotFound:
            return None

    def networks(self):
        return self.client.api.networks()

    def endpoint_names(self):
        """{endpoint id: container name} of every container dockerd has."""
        names = {}
        for c in self.client.api.containers(all=True):
            for net in (c.get("NetworkSettings") or {}).get("Networks", {}).values():
                if net.get("EndpointID"):
                    names[net["EndpointID"]] = c["Names"][0].lstrip("/")
        return names

    def container(self, name_or_id):
        """The container's inspect answer, or None."""
        import docker.errors
        try:
            return self.client.api.inspect_container(name_or_id)
        except docker.errors.NotFound:
            return None

    def info(self):
        return self.client.api.info()

    def version(self):
        return self.client.api.version()


def reach():
    """DockerAPI, or None where dockerd does not answer: the operator commands say what
    they can without it."""
    try:
        return DockerAPI.connect()
    except Exception:
        return None
