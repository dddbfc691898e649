#!/bin/bash
# Clients and plugin sets the tests use beside the system's, each from nothing into a
# prefix of its own (skipped when present):
#
#   scripts/extras.sh cni-1.9     sid's containernetworking-plugins (1.9.x, CNI 1.1.0)
#                                 in $PREFIX/cni-1.9/usr/lib/cni
#   scripts/extras.sh compose     sid's docker-compose (v2) as the docker CLI plugin
#                                 /usr/local/lib/docker/cli-plugins/docker-compose
#   scripts/extras.sh podman      Debian 12's podman (its CNI backend), installed with apt
#   scripts/extras.sh registry    Debian 12's docker-registry (distribution 2.8) in
#                                 $PREFIX/registry/usr/bin: unpacked, not installed, so no
#                                 service starts; tests run their own on a free port
#   scripts/extras.sh path cni-1.9|registry   prints the plugin dir, or the registry binary
#   scripts/extras.sh all
#
# PYCNI_ENGINES_DIR moves the prefix (default /opt/pycni-engines, shared with engines.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/debfetch.sh
. scripts/lib/debfetch.sh

PREFIX=${PYCNI_ENGINES_DIR:-/opt/pycni-engines}
CNI19=$PREFIX/cni-1.9
COMPOSE=/usr/local/lib/docker/cli-plugins/docker-compose
REGISTRY=$PREFIX/registry

# A Debian package of SUITE unpacked into DIR, unless EXE (a file it holds) is there:
# made aside and moved in whole, so that an interrupted fetch leaves nothing half-made.
unpack_into() {
    local suite=$1 dir=$2 exe=$3 package=$4
    [ -x "$dir/$exe" ] && return 0
    rm -rf "$dir.new"
    fetch_debs "$suite" "$dir.new" "$package"
    rm -rf "$dir"
    mv "$dir.new" "$dir"
    echo "extras: $(cat "$dir/.debs") in $dir" >&2
}

install_cni19() {
    unpack_into sid "$CNI19" usr/lib/cni/bridge containernetworking-plugins
}

install_compose() {
    [ -x "$COMPOSE" ] && "$COMPOSE" version >/dev/null 2>&1 && return 0
    local tmp
    tmp=$(mktemp -d)
    fetch_debs sid "$tmp/root" docker-compose
    mkdir -p "$(dirname "$COMPOSE")"
    install -m 0755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE"
    rm -rf "$tmp"
    echo "extras: $("$COMPOSE" version)" >&2
}

install_registry() {
    unpack_into bookworm "$REGISTRY" usr/bin/docker-registry docker-registry
}

install_podman() {
    command -v podman >/dev/null && return 0
    echo "extras: installing podman" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Its CNI backend: no netavark, so podman uses /etc/cni/net.d (87-podman-bridge.conflist).
    apt-get install -y -qq --no-install-recommends podman >/dev/null
}

case "${1:-}" in
    cni-1.9) install_cni19 ;;
    compose) install_compose ;;
    podman) install_podman ;;
    registry) install_registry ;;
    all) install_cni19; install_compose; install_podman; install_registry ;;
    path)
        case "${2:-}" in
            cni-1.9) echo "$CNI19/usr/lib/cni" ;;
            registry) echo "$REGISTRY/usr/bin/docker-registry" ;;
            *) echo "extras: path of what? (cni-1.9, registry)" >&2; exit 2 ;;
        esac ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
