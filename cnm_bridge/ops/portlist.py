"""`pycni ports`: the published ports of every pycni endpoint, by container.

Docker shows no ports for remote-driver networks (`docker port` stays empty),
so this reads pycni's store and asks dockerd only for container names.
"""

from ..network.netspec import legacy
from ..state.store import Store


def container_names(docker):
    """{endpoint id: container name} from dockerd; {} if it cannot be asked."""
    try:
        return docker.endpoint_names()
    except Exception:
        return {}


def print_ports(settings, docker=None):
    store = Store(settings.db_path, legacy=legacy)
    rows = [(ep, m) for ep in store.endpoints() for m in ep.ports]
    if docker is None:
        from .dockerapi import reach
        docker = reach()
    names = container_names(docker) if docker is not None else {}
    print(f"{'CONTAINER':<24} {'HOST':<24} {'CONTAINER PORT':<16} ENDPOINT")
    for ep, m in rows:
        host = f"{m.get('hostIP') or '0.0.0.0'}:{m['hostPort']}"
        print(f"{names.get(ep.id, '-'):<24} {host:<24} "
              f"{str(m['containerPort']) + '/' + m['protocol']:<16} {ep.id[:12]}")
    return 0
