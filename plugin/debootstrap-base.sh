#!/bin/bash
# Builds a minimal Debian root filesystem (no Python) for `make base-image`:
#   plugin/debootstrap-base.sh DIR [SUITE]
# DIR is left alone if DIR.done exists (the stamp is kept outside the rootfs). The mirror is the one this host's
# apt uses (deb822 /etc/apt/sources.list.d/*.sources, then one-line sources.list),
# unless MIRROR is set. Needs root and debootstrap; never calls docker.
set -euo pipefail

dir=${1:?usage: $0 DIR [SUITE]}
suite=${2:-bookworm}
stamp="$dir.done"

if [ -e "$stamp" ] && [ -d "$dir" ]; then
    echo "base rootfs: $dir already built ($(cat "$stamp")); rm -rf it to rebuild" >&2
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base rootfs: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base rootfs: debootstrap needs root" >&2; exit 1; }

# The Debian archive (not debian-security) this host's apt is configured with.
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )'"$suite"'( |$)/) { print uri; exit }
                               uri = ""; suites = ""; next }
            /^URIs:/         { uri = $2 }
            /^Suites:/       { $1 = ""; suites = $0 " " }
            END              { if (uri != "" && suites ~ /(^| )'"$suite"'( |$)/) print uri }
        ' "$f"
    done | head -n1
    if [ -r /etc/apt/sources.list ]; then
        awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list
    fi
}
mirror=${MIRROR:-$(host_mirror | head -n1)}
if [ -z "$mirror" ]; then
    echo "base rootfs: no Debian mirror found in /etc/apt/sources.list(.d); set MIRROR=http://..." >&2
    exit 1
fi

tmp="$dir.tmp"
# A previous run that died may have left debootstrap's /proc or /sys mounted in it.
cleanup_tmp() {
    if [ -d "$tmp" ]; then
        awk -v t="$(realpath "$tmp")/" 'index($2 "/", t) == 1 { print $2 }' /proc/self/mounts |
            sort -r | while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$tmp"
    fi
}
cleanup_tmp
trap cleanup_tmp EXIT
mkdir -p "$(dirname "$dir")"

echo "base rootfs: debootstrap --variant=minbase $suite $tmp $mirror" >&2
start=$(date +%s)
debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >&2

# apt inside `docker build` uses the same sources as this host (updates and security
# too) when they are deb822 Debian sources; otherwise debootstrap's sources.list stays.
if [ -r /etc/apt/sources.list.d/debian.sources ] && [ -z "${MIRROR:-}" ]; then
    cp /etc/apt/sources.list.d/debian.sources "$tmp/etc/apt/sources.list.d/debian.sources"
    rm -f "$tmp/etc/apt/sources.list"
fi
rm -rf "${tmp:?}/var/cache/apt/archives/"*.deb "${tmp:?}/var/lib/apt/lists/"*

rm -rf --one-file-system "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$suite $mirror $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$stamp"
echo "base rootfs: $dir in $(( $(date +%s) - start )) s, $(du -sh --one-file-system "$dir" | cut -f1)" >&2
