# The root filesystem of pycni's managed (v2) Docker plugin. Built by `make plugin`
# from a small context (plugin/build/context: this file, plugin/*.sh and wheels/),
# then exported into plugin/build/pycni/rootfs next to plugin/config.json.
#
# BASE is any Debian bookworm image: python:3.11-slim-bookworm (the default), or
# pycni-base:local from `make base-image` (debootstrap minbase, no Python: apt
# installs python3 and pip). No package index is reachable for pip here: pycni and
# its dependencies come as wheels built on the host (`make wheels`), for Python 3.11.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG DEBIAN_FRONTEND=noninteractive

# containernetworking-plugins: the reference CNI plugins, in /usr/lib/cni.
# iptables: both iptables-nft and iptables-legacy (the entrypoint picks the host's).
# nftables: `nft`, which the bridge plugin's macspoofchk runs.
# iproute2: `ip`, for looking around inside the plugin. mount: the entrypoint mounts.
RUN set -eux; \
    pkgs="containernetworking-plugins iptables nftables iproute2 mount"; \
    if ! python3 -m pip --version >/dev/null 2>&1; then pkgs="$pkgs python3 python3-pip"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'; \
    test -x /usr/lib/cni/bridge

# Debian's python3 is "externally managed" (PEP 668): pip needs BREAK_SYSTEM_PACKAGES.
COPY wheels/ /tmp/wheels/
RUN set -eux; \
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --no-index --no-cache-dir --find-links /tmp/wheels pycni; \
    rm -rf /tmp/wheels; \
    python3 -c 'import cnm_bridge.app, cnm_bridge.docker.server, cni_runner, gunicorn, flask, docker'; \
    pycni serve --help >/dev/null; \
    # What only building needed, and documentation: a smaller rootfs is a faster
    # `docker plugin create` (Docker packs it on every host).
    if dpkg -s python3-pip >/dev/null 2>&1; then apt-get purge -y --auto-remove python3-pip; fi; \
    rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*; \
    python3 -c 'import cnm_bridge.app, cnm_bridge.docker.server, cni_runner, gunicorn, flask, docker'; \
    pycni serve --help >/dev/null

COPY entrypoint.sh /usr/local/bin/pycni-plugin-entrypoint
COPY iptables-wrapper.sh /usr/local/sbin/pycni-iptables
# /usr/local/sbin comes first on the PATH dockerd gives plugins.
RUN set -eux; \
    chmod 0755 /usr/local/bin/pycni-plugin-entrypoint /usr/local/sbin/pycni-iptables; \
    for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
        ln -sf pycni-iptables "/usr/local/sbin/$n"; \
    done; \
    for v in nft legacy; do test -x "/usr/sbin/iptables-$v-save" && test -x "/usr/sbin/ip6tables-$v-restore"; done; \
    mkdir -p /run/docker/plugins /run/netns /host/run/docker /etc/cni/net.d /opt/cni/bin /var/lib/pycni /var/lib/cni

ENTRYPOINT ["/usr/local/bin/pycni-plugin-entrypoint"]
