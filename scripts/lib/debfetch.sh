# Sourced: Debian packages of another suite unpacked into a prefix of their own.

# The host's Debian archive, in a private apt state under $1: Debian's own packages of
# another suite, without touching the host's sources or lists.
apt_suite_opts() {
    local tmp=$1 suite=$2 uri
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    uri=${uri:-http://deb.debian.org/debian}
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
        >"$tmp/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=-"
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
              -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1"
              -o "APT::Sandbox::User=root")
}

# Downloads PACKAGES of SUITE and unpacks them into DIR (made anew).
# Runs in a subshell so that its temporary dir goes with it, whatever happens.
fetch_debs() (
    local suite=$1 dir=$2 tmp
    shift 2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    apt_suite_opts "$tmp" "$suite"
    echo "fetching $* from Debian $suite" >&2
    apt-get "${APT_OPTS[@]}" -qq update
    (cd "$tmp" && apt-get "${APT_OPTS[@]}" -qq download "$@")
    mkdir -p "$dir"
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$dir"
        dpkg-deb -f "$deb" Package Version | paste -sd" " >>"$dir/.debs"
    done
)
