#!/bin/sh
# pycni managed (v2) plugin entrypoint: /usr/local/bin/pycni-plugin-entrypoint.
#
# dockerd starts it in the plugin's own mount and pid namespaces, on the host's
# network, and logs its stdout and stderr. It prepares the plugin rootfs for CNI,
# then becomes `pycni serve` on the socket named in config.json (interface.socket).
# Every decision is logged to stderr, so it shows in dockerd's log.
#
# Sourced with PYCNI_ENTRYPOINT_LIB=1 it only defines its functions (for tests).

SOCKET=/run/docker/plugins/pycni.sock      # config.json: interface.socket = pycni.sock
NETNS_DIR=/run/netns                       # cnm_bridge.host.netns.NETNS_DIR
PROC_SYS_NET=/proc/sys/net
HOST_BIN_DIR=/opt/cni/bin                  # config.json mount "cni-bin"
STATE_DIR_DEFAULT=/var/lib/pycni           # config.json mount "state"
CNI_DATA_DIR=/var/lib/cni                  # config.json mount "cni-data": host-local's default dataDir
XTABLES_LOCK=/run/xtables.lock             # config.json mount "xtables-lock"
MOUNTINFO=/proc/self/mountinfo
BUNDLED_BIN_DIR=/usr/lib/cni               # Debian's containernetworking-plugins
IPTABLES_WRAPPER=/usr/local/sbin/pycni-iptables
PYCNI_IPTABLES_STATE=${PYCNI_IPTABLES_STATE:-/run/pycni/iptables-backend}
export PYCNI_IPTABLES_STATE

log() {
    echo "pycni-plugin-entrypoint: $*" >&2
}

# The scratch netns pycni makes (/run/netns/pycni-<endpoint>) are bind mounts in
# this mount namespace: they die with it. /run is on the plugin's rootfs, on disk,
# so without a tmpfs the empty files would outlive them and look like netns.
setup_netns_dir() {
    mkdir -p "$NETNS_DIR"
    if mountpoint -q "$NETNS_DIR" 2>/dev/null; then
        log "$NETNS_DIR: already a mount point, used as is"
    elif mount -t tmpfs -o mode=0755,nosuid,nodev,noexec pycni-netns "$NETNS_DIR"; then
        log "$NETNS_DIR: fresh tmpfs for scratch netns (those of an earlier run died with its mount namespace)"
    else
        rm -f "$NETNS_DIR"/pycni-*
        log "WARNING: cannot mount a tmpfs on $NETNS_DIR; removed stale entries instead"
    fi
}

# Docker mounts /proc/sys read-only in plugins. CNI plugins write net sysctls:
# portmap sets route_localnet on the host interface, bridge turns on IPv6 forwarding
# and per-interface IPv6 DAD / accept_ra, tuning sets what it is asked to. Only
# /proc/sys/net is made writable (it follows the netns of whoever opens it).
setup_proc_sys_net() {
    if [ -w "$PROC_SYS_NET/ipv4/ip_forward" ]; then
        log "$PROC_SYS_NET: writable"
        return
    fi
    if mount --bind "$PROC_SYS_NET" "$PROC_SYS_NET" &&
            mount -o remount,bind,rw "$PROC_SYS_NET" &&
            [ -w "$PROC_SYS_NET/ipv4/ip_forward" ]; then
        log "$PROC_SYS_NET: made writable (Docker mounts /proc/sys read-only in plugins; CNI plugins set net sysctls)"
    else
        log "WARNING: $PROC_SYS_NET stays read-only: CNI plugins that set sysctls (portmap with -p, bridge with IPv6) will fail"
    fi
}

# Which iptables the CNI plugins run: the backend the host (dockerd) uses, since
# the plugin shares the host's network namespace and so its tables.
# PYCNI_IPTABLES=nft|legacy forces it; auto (default) counts rules, see the wrapper.
setup_iptables() {
    rm -f "$PYCNI_IPTABLES_STATE"
    mkdir -p "$(dirname "$PYCNI_IPTABLES_STATE")"
    # The wrapper logs here when it decides later: this process's stderr, kept by `exec`.
    export PYCNI_IPTABLES_LOG="/proc/$$/fd/2"
    mode=${PYCNI_IPTABLES:-auto}
    case "$mode" in
        nft|legacy)
            echo "$mode" >"$PYCNI_IPTABLES_STATE"
            log "iptables backend: $mode (PYCNI_IPTABLES)" ;;
        *)
            if [ "$mode" != auto ]; then
                log "WARNING: PYCNI_IPTABLES=$mode is not auto, nft or legacy; using auto"
            fi
            counts=$("$IPTABLES_WRAPPER" detect) || counts=""
            case "$counts" in
                "legacy "*" nft "*) ;;
                *) log "WARNING: cannot count iptables rules ($IPTABLES_WRAPPER detect: '$counts'); the backend is decided at the first iptables call"
                   return ;;
            esac
            # shellcheck disable=SC2086 # split "legacy N nft M" on purpose
            set -- $counts
            if [ "$2" -eq 0 ] && [ "$4" -eq 0 ]; then
                log "iptables backend: undecided (no rule in either backend yet, as right after a boot: dockerd starts plugins before it writes rules); decided at the first iptables call"
                return
            fi
            mode=$("$IPTABLES_WRAPPER" decide)
            log "iptables backend: $mode (rules: $counts)" ;;
    esac
    if [ "$mode" = legacy ]; then
        check_xtables_lock
    fi
}

# On a legacy-iptables host the plugin's iptables calls must wait for dockerd's: they
# share the host's lock file only if mount "xtables-lock" has it as its source (its
# default, /dev/null, exists on every host; nftables needs no lock).
check_xtables_lock() {
    if [ -c "$XTABLES_LOCK" ]; then
        log "WARNING: legacy iptables, but $XTABLES_LOCK is not the host's lock, so this plugin's iptables calls are not serialized with dockerd's. On the host: touch /run/xtables.lock; docker plugin disable NAME; docker plugin set NAME xtables-lock.source=/run/xtables.lock; docker plugin enable NAME"
    else
        log "legacy iptables: $XTABLES_LOCK is the host's lock (mount xtables-lock)"
    fi
}

# Direct mode (CNI in the container's own netns at Join) needs the netns dockerd mounts
# at the SandboxKey after this plugin started. They appear here only if mount
# "docker-run" receives the host's mounts: a slave of a shared host mount (systemd's /run
# is shared). Otherwise pycni hands over, which works everywhere.
check_sandbox_propagation() {
    root=${PYCNI_SANDBOX_ROOT:-}
    if [ -z "$root" ]; then
        log "PYCNI_SANDBOX_ROOT is empty: handoff only (no container netns seen at Join)"
        return
    fi
    if ! [ -d "$root/run/docker" ]; then
        log "WARNING: $root/run/docker is not there (mount docker-run): handoff only"
        return
    fi
    # mountinfo's optional fields: "master:N" once the host side propagates to us.
    if awk -v m="$root/run/docker" '$5 == m { for (i = 7; $i != "-"; i++) if ($i ~ /^master:/) found = 1 }
            END { exit found ? 0 : 1 }' "$MOUNTINFO"; then
        log "$root/run/docker receives the host's mounts: direct mode available (the container's netns at Join, Docker 28+)"
    else
        log "$root/run/docker does not receive the host's mounts (the host's /run/docker is not in a shared mount; systemd hosts have /run shared): networks with -o cni.attach=direct hand over instead"
    fi
}

# Bundled plugins first, then the host's /opt/cni/bin (mounted read-only) if present.
setup_bin_dirs() {
    dirs=${PYCNI_BIN_DIR:-$BUNDLED_BIN_DIR}
    if [ -d "$HOST_BIN_DIR" ]; then
        case ":$dirs:" in
            *":$HOST_BIN_DIR:"*) ;;
            *) dirs="$dirs:$HOST_BIN_DIR" ;;
        esac
        log "host CNI plugin dir $HOST_BIN_DIR: $(find "$HOST_BIN_DIR" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) entries, searched after the bundled ones"
    else
        log "host CNI plugin dir $HOST_BIN_DIR: absent, not searched"
    fi
    PYCNI_BIN_DIR=$dirs
    export PYCNI_BIN_DIR
}

# pycni's state dir and host-local's default data dir are mounts of the host's own dirs
# (mounts "state" and "cni-data"); what is not mounted would die with the plugin.
setup_host_dirs() {
    state=${PYCNI_STATE_DIR:-$STATE_DIR_DEFAULT}
    for d in "$state" "$CNI_DATA_DIR"; do
        if ! mountpoint -q "$d" 2>/dev/null && ! mountpoint -q "$(dirname "$d")" 2>/dev/null; then
            log "WARNING: $d is not a mount of a host dir: what pycni keeps there is lost when the plugin is removed"
        fi
    done
    mkdir -p "$state"
    chmod 0700 "$state"
    conf=${PYCNI_CONF_DIR:-/etc/cni/net.d}
    if [ -d "$conf" ]; then
        log "conf dir $conf: $(find "$conf" -maxdepth 1 -type f 2>/dev/null | wc -l) files"
    else
        log "conf dir $conf: absent (only zero-config networks until it exists)"
    fi
}

main() {
    set -eu
    log "starting (pid $$): $(pycni_version)"
    setup_host_dirs
    setup_netns_dir
    setup_proc_sys_net
    setup_iptables
    setup_bin_dirs
    check_sandbox_propagation
    unset PYCNI_SOCKET  # the socket must be the one config.json names
    log "exec pycni serve: socket $SOCKET, conf dir ${PYCNI_CONF_DIR:-/etc/cni/net.d}," \
        "plugin dirs $PYCNI_BIN_DIR, state dir ${PYCNI_STATE_DIR:-$STATE_DIR_DEFAULT}," \
        "plugin timeout ${PYCNI_PLUGIN_TIMEOUT:-60}s, log level ${PYCNI_LOG_LEVEL:-info}"
    # The reconciler's docker SDK: dockerd's socket as mounted (config.json "docker-socket").
    export DOCKER_HOST="${DOCKER_HOST:-unix:///run/docker.sock}"
    exec pycni serve --socket "$SOCKET" "$@"
}

pycni_version() {
    python3 -c 'import importlib.metadata as m, sys; print("pycni", m.version("pycni"), "python", sys.version.split()[0])' 2>/dev/null ||
        echo "pycni (version unknown)"
}

if [ -z "${PYCNI_ENTRYPOINT_LIB:-}" ]; then
    main "$@"
fi
