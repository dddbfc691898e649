"""`pycni ports`: the published ports of every pycni endpoint, by container.

Docker shows no ports for remote-driver networks (`docker port` stays empty),
so this reads pycni's store and asks dockerd only for container names.
"""

from .store import Store


def container_names(client):
    """{endpoint id: container name} from dockerd; {} if it cannot be asked."""
    names = {}
    try:
        for c in client.api.containers():
            for net in (c.get("NetworkSettings") or {}).get("Networks", {}).values():
                if net.get("EndpointID"):
                    names[net["EndpointID"]] = c["Names"][0].lstrip("/")
    except Exception:
        pass
    return names


def print_ports(settings, client=None):
    store = Store(settings.db_path)
    rows = [(ep, m) for ep in store.endpoints() for m in ep.ports]
    if client is None:
        try:
            from .reconcile import docker_client
            client = docker_client(timeout=5)
        except Exception:
            client = None
    names = container_names(client) if client is not None else {}
    print(f"{'CONTAINER':<24} {'HOST':<24} {'CONTAINER PORT':<16} ENDPOINT")
    for ep, m in rows:
        host = f"{m.get('hostIP') or '0.0.0.0'}:{m['hostPort']}"
        print(f"{names.get(ep.id, '-'):<24} {host:<24} "
              f"{str(m['containerPort']) + '/' + m['protocol']:<16} {ep.id[:12]}")
    return 0
