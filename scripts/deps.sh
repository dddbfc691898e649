#!/bin/bash
# Installs what pycni and its tests need, skipping what is already there.
# Debian: docker.io, containernetworking-plugins, iptables, busybox-static, make, debootstrap;
# PyPI: pycni.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null || need+=(docker.io)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables-save >/dev/null || need+=(iptables)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
# The managed-plugin test builds its rootfs: make, debootstrap (tests/e2e/test_managed_plugin.py).
command -v make >/dev/null || need+=(make)
command -v debootstrap >/dev/null || need+=(debootstrap)
# The tests build a static UDP echo server into their busybox image.
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's own Python refuses system-wide pip installs (PEP 668); pyenv's does not.
pip_install() {
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
if [ "${1:-}" = "--test" ]; then
    pip_install -e '.[test]'
else
    pip_install .
fi
