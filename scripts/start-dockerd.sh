#!/bin/bash
# Starts dockerd (and so containerd) if no daemon answers; waits until it does.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exit 0
fi
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
else
    # A daemon killed with the machine's previous session leaves its pid file behind,
    # and dockerd refuses to start while that pid is a live (or zombie) process.
    for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        if [ -z "$state" ] || [ "$state" = Z ] || { [ "$comm" != dockerd ] && [ "$comm" != containerd ]; }; then
            rm -f "$pidfile"
        fi
    done
    # shellcheck source=scripts/lib/sharedrun.sh
    . "$(dirname "$0")/lib/sharedrun.sh"
    share_docker_run
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
fi
# Minutes, not seconds: a daemon whose last run was killed with many containers
# first removes each stale sandbox.
for _ in $(seq 1 600); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
echo "dockerd did not start; see /var/log/dockerd.log" >&2
exit 1
