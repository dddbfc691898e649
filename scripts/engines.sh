#!/bin/bash
# Docker engines beside the system's: Debian 13's docker.io 26.1 and sid's 28.5, from
# Debian's own packages (their dockerd, containerd and CLI; the host's runc serves, as
# theirs needs a newer glibc). One engine runs at a time: all of them use
# /var/run/docker.sock and /run/docker/plugins; each has its own data root.
#
#   scripts/engines.sh install [26|28|all]   download and unpack (skipped when present)
#   scripts/engines.sh start 20|26|28        stop whichever dockerd runs, start this one
#   scripts/engines.sh stop                  stop the running dockerd
#   scripts/engines.sh current               the running engine's major version
#   scripts/engines.sh env 26|28             the PATH that engine's binaries need
#
# 20 is the system's own (docker.io of Debian 12, /usr/bin), started as
# scripts/start-dockerd.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PYCNI_ENGINES_DIR:-/opt/pycni-engines}
LOG_DIR=/var/log
suite_of() {
    case "$1" in
        26) echo trixie ;;
        28) echo sid ;;
        *) echo "engines: unknown engine '$1' (20, 26 or 28)" >&2; return 2 ;;
    esac
}

install_one() {
    local engine=$1 suite dir tmp
    suite=$(suite_of "$engine")
    dir=$PREFIX/$engine
    if [ -x "$dir/usr/sbin/dockerd" ] || [ -x "$dir/usr/bin/dockerd" ]; then
        return 0
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    # Debian's own archive, through the host's configured mirror, in a private apt state.
    local uri
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    uri=${uri:-http://deb.debian.org/debian}
    cat >"$tmp/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main
EOF
    local opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=-"
                -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
                -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1"
                -o "APT::Sandbox::User=root")
    echo "engines: fetching docker.io, containerd, docker-cli from Debian $suite" >&2
    apt-get "${opts[@]}" -qq update
    (cd "$tmp" && apt-get "${opts[@]}" -qq download docker.io containerd docker-cli)
    mkdir -p "$dir.new"
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$dir.new"
    done
    # Their runc wants a newer glibc than this host has; the host's serves.
    rm -f "$dir.new/usr/sbin/runc" "$dir.new/usr/bin/runc"
    rm -rf "$dir"
    mv "$dir.new" "$dir"
    echo "engines: Docker $engine in $dir: $("$dir"/usr/sbin/dockerd --version 2>/dev/null ||
        "$dir"/usr/bin/dockerd --version)" >&2
}

engine_path() {
    local dir=$PREFIX/$1
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
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 240); do
        [ -d "/proc/$pid" ] || return 0
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
    return 1
}

start_engine() {
    local engine=$1
    if [ "$(current)" = "$engine" ]; then
        return 0
    fi
    stop_dockerd
    if [ "$engine" = 20 ]; then
        ./scripts/start-dockerd.sh
        return
    fi
    suite_of "$engine" >/dev/null
    install_one "$engine"
    local log=$LOG_DIR/dockerd-$engine.log exe
    exe=$PREFIX/$engine/usr/sbin/dockerd
    [ -x "$exe" ] || exe=$PREFIX/$engine/usr/bin/dockerd
    rm -f /var/run/docker.pid
    # Its own data root (images, containers, networks); the same socket and plugin dir.
    PATH=$(engine_path "$engine") nohup setsid "$exe" --data-root "/var/lib/docker-$engine" \
        >>"$log" 2>&1 </dev/null &
    wait_answers "$log"
}

current() {
    /usr/bin/docker version -f '{{.Server.Version}}' 2>/dev/null | cut -d. -f1 || true
}

case "${1:-}" in
    install)
        case "${2:-all}" in
            all) install_one 26; install_one 28 ;;
            *) install_one "$2" ;;
        esac ;;
    start) start_engine "${2:?engine: 20, 26 or 28}" ;;
    stop) stop_dockerd ;;
    current) current ;;
    env) engine_path "${2:?engine: 26 or 28}" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
