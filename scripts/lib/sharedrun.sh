# Sourced: dockerd's exec root /run/docker in a shared mount, as on a systemd host.
#
# systemd mounts /run shared at boot. A machine booted without it (CI's) has / private,
# and then the managed plugin's mount of /run/docker (rslave) never sees the netns dockerd
# mounts after the plugin started: direct mode would silently hand over. Call before
# dockerd starts: the self-bind must not hide mounts dockerd made under the old one.
share_docker_run() {
    mkdir -p /run/docker
    case "$(findmnt -no PROPAGATION --target /run/docker 2>/dev/null)" in
        shared*) return 0 ;;
    esac
    mountpoint -q /run/docker || mount --rbind /run/docker /run/docker
    mount --make-rshared /run/docker
    echo "engines: /run/docker made a shared mount (as systemd's /run)" >&2
}
