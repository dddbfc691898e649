"""What pycni asks dockerd, outside any request from it: `pycni gc` and the operator
commands, through the Docker SDK.

The API version is negotiated (`version="auto"`): Docker 20.10 speaks 1.41 at
most, 29 refuses clients below 1.44, and the SDK's own default is neither.
"""


class DockerAPI:
    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, timeout=10):
        """dockerd at DOCKER_HOST (default its unix socket)."""
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
