"""Docker's SandboxKey as a process that sees the host's /run elsewhere finds it."""

from cnm_bridge.host.netns import seen_from


def test_same_mount_namespace_keeps_the_path():
    assert seen_from("/var/run/docker/netns/abc", "") == "/var/run/docker/netns/abc"
    assert seen_from("/var/run/docker/netns/abc", "/") == "/var/run/docker/netns/abc"


def test_managed_plugin_reads_it_under_its_mount_of_run():
    # /var/run is the host's symlink to /run; the plugin's mount holds /run/docker only.
    assert seen_from("/var/run/docker/netns/abc", "/host") == "/host/run/docker/netns/abc"
    assert seen_from("/run/docker/netns/abc", "/host/") == "/host/run/docker/netns/abc"
