#!/bin/bash
# Docker engines beside the system's: Debian 13's docker.io 26.1, sid's 28.5, and 29.7
# (dockerd and docker-proxy built from moby's tag, in ../shared/engines, served by sid's
# containerd), each from nothing into its own prefix. The host's runc serves them all, as
# theirs needs a newer glibc. One engine runs at a time: all of them use
# /var/run/docker.sock and /run/docker/plugins; each has its own data root.
#
#   scripts/engines.sh install [26|28|29|all]   download and unpack (skipped when present)
#   scripts/engines.sh start 20|26|28|29|29nft   stop whichever dockerd runs, start this one
#   scripts/engines.sh stop                      stop the running dockerd
#   scripts/engines.sh current                   the running engine (20, 26, 28, 29, 29nft)
#   scripts/engines.sh available ENGINE          exit 0 if ENGINE can be installed here
#   scripts/engines.sh env 26|28|29              the PATH that engine's binaries need
#
# 20 is the system's own (docker.io of Debian 12, /usr/bin), started as
# scripts/start-dockerd.sh does. 29nft is 29 with "firewall-backend": "nftables", started on
# a host cleared of the iptables chains and FORWARD policy an iptables-mode engine left, with
# forwarding off, as a fresh nftables host is. PYCNI_ENGINES_DIR moves the prefixes
# (default /opt/pycni-engines), PYCNI_SHARED_DIR the shared dir (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PYCNI_ENGINES_DIR:-/opt/pycni-engines}
SHARED=${PYCNI_SHARED_DIR:-$(cd .. && pwd)/shared}
ENGINE29_TARBALL=$SHARED/engines/docker-29.7.2-debian12-amd64.tar.xz
LOG_DIR=/var/log
# shellcheck source=scripts/lib/debfetch.sh
. scripts/lib/debfetch.sh
# shellcheck source=scripts/lib/sharedrun.sh
. scripts/lib/sharedrun.sh
RUN_DIR=/run/pycni-engines

prefix_of() {
    case "$1" in
        29nft) echo "$PREFIX/29" ;;
        *) echo "$PREFIX/$1" ;;
    esac
}

dockerd_exe() {
    local dir=$1
    if [ -x "$dir/usr/sbin/dockerd" ]; then echo "$dir/usr/sbin/dockerd"
    else echo "$dir/usr/bin/dockerd"; fi
}

install_one() {
    local engine=$1 dir
    [ "$engine" = 29nft ] && engine=29
    dir=$(prefix_of "$engine")
    if [ -x "$dir/usr/sbin/dockerd" ] || [ -x "$dir/usr/bin/dockerd" ]; then
        return 0
    fi
    rm -rf "$dir.new"
    case "$engine" in
        26) fetch_debs trixie "$dir.new" docker.io containerd docker-cli ;;
        28) fetch_debs sid "$dir.new" docker.io containerd docker-cli ;;
        29)
            [ -f "$ENGINE29_TARBALL" ] || {
                echo "engines: Docker 29 needs $ENGINE29_TARBALL" >&2; return 1; }
            # containerd from sid (29 asks for 1.6.22 or later); dockerd from the tarball.
            fetch_debs sid "$dir.new" containerd
            tar -C "$dir.new" -xJf "$ENGINE29_TARBALL" ;;
        *) echo "engines: unknown engine '$engine' (20, 26, 28, 29 or 29nft)" >&2; return 2 ;;
    esac
    # Their runc wants a newer glibc than this host has; the host's serves.
    rm -f "$dir.new/usr/sbin/runc" "$dir.new/usr/bin/runc"
    rm -rf "$dir"
    mv "$dir.new" "$dir"
    echo "engines: Docker $engine in $dir: $("$(dockerd_exe "$dir")" --version)" >&2
}

available() {
    case "$1" in
        20|26|28) return 0 ;;
        29|29nft) [ -f "$ENGINE29_TARBALL" ] || [ -x "$(dockerd_exe "$PREFIX/29")" ] ;;
        *) return 1 ;;
    esac
}

engine_path() {
    local dir
    dir=$(prefix_of "$1")
    echo "$dir/usr/sbin:$dir/usr/bin:$dir/usr/libexec/docker/cli-plugins:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

dockerd_pid() {
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        echo "$pid"
    fi
}

stop_dockerd() {
    local pid
    pid=$(dockerd_pid)
    if [ -z "$pid" ]; then
        if command -v systemctl >/dev/null && systemctl is-active -q docker 2>/dev/null; then
            systemctl stop docker docker.socket 2>/dev/null || true
        fi
        rm -f "$RUN_DIR/current"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 240); do
        if [ ! -d "/proc/$pid" ]; then
            rm -f "$RUN_DIR/current"
            return 0
        fi
        sleep 0.5
    done
    echo "engines: dockerd $pid did not stop" >&2
    return 1
}

wait_answers() {
    # Minutes, not seconds: a daemon whose last run was killed with many containers
    # first removes each stale sandbox.
    for _ in $(seq 1 600); do
        /usr/bin/docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "engines: dockerd did not answer; see $1" >&2
    tail -n 20 "$1" >&2 || true
    return 1
}

# What an iptables-mode engine leaves in the host's iptables: its chains, the jumps to
# them and FORWARD's DROP policy. A fresh nftables host has none of it, and forwarding off.
clear_iptables_engine_leftovers() {
    local cmd table chain
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null || continue
        for table in filter nat mangle raw; do
            # Jumps to Docker's chains first, then the chains.
            "$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^-A \([A-Z-]*\) \(.*-j DOCKER[A-Z0-9-]*\)$/\1 \2/p' |
                while read -r chain rule; do
                    # shellcheck disable=SC2086 # the saved rule's words
                    "$cmd" -t "$table" -D "$chain" $rule 2>/dev/null || true
                done
            for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(DOCKER[A-Z0-9-]*\) .*/\1/p'); do
                "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(DOCKER[A-Z0-9-]*\) .*/\1/p'); do
                "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
        "$cmd" -P FORWARD ACCEPT 2>/dev/null || true
    done
    sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 2>/dev/null || true
}

# Debian 12's runc 1.1.5 knows no time namespace, which 29 gives every container (the
# feature flag turns that off) and every managed plugin (nothing does): a runtime that drops
# it from the bundle's spec before runc sees it.
write_runc_wrapper() {
    local wrapper=$1 runc
    runc=$(command -v runc)
    cat >"$wrapper" <<WRAPPER
#!/bin/sh
bundle=
prev=
for arg; do
    case "\$prev" in --bundle|-b) bundle=\$arg ;; esac
    prev=\$arg
done
if [ -n "\$bundle" ] && [ -f "\$bundle/config.json" ]; then
    sed -i 's/,{"type":"time"}//; s/{"type":"time"},\{0,1\}//' "\$bundle/config.json"
fi
exec $runc "\$@"
WRAPPER
    chmod 0755 "$wrapper"
}

daemon_config() {
    # Beside the engine, not in /run: the multi-host tests' hosts mount a /run of their own.
    local engine=$1 dir wrapper file
    dir=$(prefix_of "$engine")
    file=$dir/daemon-$engine.json
    case "$engine" in
        29|29nft)
            wrapper=$dir/runc-notime
            write_runc_wrapper "$wrapper"
            local firewall=""
            # A fresh nftables host: forwarding off, and Docker told not to insist on it
            # (its check refuses to start otherwise); what pycni's networks need they turn on.
            [ "$engine" = 29nft ] && firewall='"firewall-backend": "nftables", "ip-forward": false, '
            echo "{${firewall}\"features\": {\"time-namespaces\": false},
 \"runtimes\": {\"runc-notime\": {\"path\": \"$wrapper\"}}, \"default-runtime\": \"runc-notime\"}" >"$file" ;;
        *) echo '{}' >"$file" ;;
    esac
    echo "$file"
}

start_engine() {
    local engine=$1
    available "$engine" || { echo "engines: unknown or unavailable engine '$engine'" >&2; return 2; }
    if [ "$(current)" = "$engine" ]; then
        return 0
    fi
    stop_dockerd
    share_docker_run
    if [ "$engine" = 20 ]; then
        ./scripts/start-dockerd.sh
        mkdir -p "$RUN_DIR" && echo 20 >"$RUN_DIR/current"
        return
    fi
    install_one "$engine"
    [ "$engine" = 29nft ] && clear_iptables_engine_leftovers
    local log=$LOG_DIR/dockerd-$engine.log exe config
    exe=$(dockerd_exe "$(prefix_of "$engine")")
    config=$(daemon_config "$engine")
    rm -f /var/run/docker.pid
    # Its own data root (images, containers, networks); the same socket and plugin dir.
    PATH=$(engine_path "$engine") nohup setsid "$exe" --data-root "/var/lib/docker-$engine" \
        --config-file "$config" >>"$log" 2>&1 </dev/null &
    wait_answers "$log"
    mkdir -p "$RUN_DIR" && echo "$engine" >"$RUN_DIR/current"
}

current() {
    local major
    major=$(/usr/bin/docker version -f '{{.Server.Version}}' 2>/dev/null | cut -d. -f1 || true)
    [ -n "$major" ] || return 0
    # 29 and 29nft are one binary: the marker written at start tells them apart.
    if [ "$major" = 29 ] && [ "$(cat "$RUN_DIR/current" 2>/dev/null)" = 29nft ]; then
        echo 29nft
    else
        echo "$major"
    fi
}

case "${1:-}" in
    install)
        case "${2:-all}" in
            all) install_one 26; install_one 28; if available 29; then install_one 29; fi ;;
            *) install_one "$2" ;;
        esac ;;
    start) start_engine "${2:?engine: 20, 26, 28, 29 or 29nft}" ;;
    stop) stop_dockerd ;;
    current) current ;;
    available) available "${2:?engine}" ;;
    env) engine_path "${2:?engine: 26, 28 or 29}" ;;
    *) sed -n '2,21p' "$0" >&2; exit 2 ;;
esac
