#!/bin/bash
# Installs pycni and starts the driver (legacy plugin on /run/docker/plugins/pycni.sock).
# With systemd: a unit ordered before docker.service; without: a background process.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
PYCNI=$(command -v pycni)
mkdir -p /etc/cni/net.d /var/lib/pycni
chmod 700 /var/lib/pycni
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    sed "s#@PYCNI@#$PYCNI#" contrib/pycni.service > /etc/systemd/system/pycni.service
    systemctl daemon-reload
    systemctl enable --now pycni.service
    # dockerd caches plugin activation; a restart makes it see pycni's IPAM too.
    systemctl restart docker || true
else
    if [ -S /run/docker/plugins/pycni.sock ] && pgrep -f "pycni serve" >/dev/null; then
        echo "pycni is already running"
    else
        nohup setsid "$PYCNI" serve >>/var/log/pycni.log 2>&1 < /dev/null &
    fi
    ./scripts/start-dockerd.sh
fi
for _ in $(seq 1 60); do
    [ -S /run/docker/plugins/pycni.sock ] && { echo "pycni is serving on /run/docker/plugins/pycni.sock"; exit 0; }
    sleep 0.5
done
echo "pycni did not start; see /var/log/pycni.log or journalctl -u pycni" >&2
exit 1
