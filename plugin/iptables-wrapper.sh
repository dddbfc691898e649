#!/bin/sh
# pycni managed plugin: iptables with the host's backend (nf_tables or legacy).
#
# Installed as /usr/local/sbin/pycni-iptables; iptables, iptables-save,
# iptables-restore and their ip6tables twins in /usr/local/sbin (first on the
# plugin's PATH, so the CNI plugins find them) are symlinks to it. Each call runs
# /usr/sbin/<name>-<backend>... for the backend recorded in $PYCNI_IPTABLES_STATE.
#
# The entrypoint records the backend at start when it can tell. Right after a
# boot it cannot: dockerd starts its plugins before it writes any rule, so both
# backends are empty. Then the first call here decides, by which backend has
# more rules (dockerd's, by then: Docker networks exist before any CNI run).
#
#   pycni-iptables detect     print "legacy N nft M" (rule counts)
#   pycni-iptables decide     print the backend a call would use now, and record it

PYCNI_IPTABLES_STATE=${PYCNI_IPTABLES_STATE:-/run/pycni/iptables-backend}
SBIN=${PYCNI_IPTABLES_SBIN:-/usr/sbin}

log() {
    # The entrypoint points PYCNI_IPTABLES_LOG at the plugin's own stderr (which
    # dockerd logs): this process's stderr belongs to the CNI plugin that called it.
    if [ -n "${PYCNI_IPTABLES_LOG:-}" ] && echo "pycni-iptables: $*" 2>/dev/null >>"$PYCNI_IPTABLES_LOG"; then
        return
    fi
    echo "pycni-iptables: $*" >&2
}

# Rule lines ("-A ...") a backend holds, IPv4 and IPv6 together.
count_rules() {
    n=0
    for fam in iptables ip6tables; do
        save="$SBIN/$fam-$1-save"
        [ -x "$save" ] || continue
        c=$("$save" 2>/dev/null | grep -c '^-') || true
        n=$((n + ${c:-0}))
    done
    echo "$n"
}

detect() {
    echo "legacy $(count_rules legacy) nft $(count_rules nft)"
}

# From "legacy N nft M": legacy only when it holds more rules; nf_tables otherwise
# (Debian's default since 10, and what the kernel has when nobody made a rule yet).
choose() {
    # shellcheck disable=SC2086 # split on purpose
    set -- $1
    if [ "$2" -gt "$4" ]; then echo legacy; else echo nft; fi
}

record() {
    mkdir -p "$(dirname "$PYCNI_IPTABLES_STATE")"
    tmp="$PYCNI_IPTABLES_STATE.$$"
    echo "$1" >"$tmp" && mv -f "$tmp" "$PYCNI_IPTABLES_STATE"
}

backend() {
    b=$(cat "$PYCNI_IPTABLES_STATE" 2>/dev/null) || b=""
    case "$b" in
        nft|legacy) echo "$b"; return ;;
    esac
    counts=$(detect)
    b=$(choose "$counts")
    record "$b"
    log "iptables backend: $b (decided at first use; rules: $counts)"
    echo "$b"
}

name=${0##*/}
case "$name" in
    pycni-iptables*)
        case "${1:-}" in
            detect) detect ;;
            decide) backend ;;
            *) echo "usage: $0 detect|decide (or call it as iptables, ip6tables-save, ...)" >&2; exit 2 ;;
        esac
        exit 0 ;;
    iptables*) fam=iptables; rest=${name#iptables} ;;
    ip6tables*) fam=ip6tables; rest=${name#ip6tables} ;;
    *) echo "pycni-iptables: called as $name" >&2; exit 2 ;;
esac
b=$(backend)
exec "$SBIN/$fam-$b$rest" "$@"
