# pycni's managed (v2) Docker plugin. See docs/managed-plugin.md.
#
#   make wheels                        pycni and its dependencies as wheels (pip, on the host)
#   make base-image                    pycni-base:local: debootstrap'ed Debian, no registry needed
#   make bundle BASE=pycni-base:local  build the plugin's bundle (config.json + rootfs/) only
#   make plugin BASE=pycni-base:local  the bundle, then `docker plugin create` $(PLUGIN)
#   make plugin-enable                 make the host dirs it mounts, then enable it
#   make plugin-disable | plugin-clean | base-clean | clean
#
# Only wheels and base-rootfs run without dockerd; nothing here runs docker at parse
# time, so `make -n TARGET` only prints.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n1)
PLUGIN ?= pycni/pycni:$(VERSION)
BASE ?= python:3.11-slim-bookworm
BASE_IMAGE ?= pycni-base:local
SUITE ?= bookworm
ROOTFS_IMAGE ?= pycni-plugin-rootfs:$(VERSION)

DOCKER ?= docker
PYTHON ?= python3
# The classic builder uses a local BASE (docker import) without asking a registry.
# --network host: apt in the build reaches the mirror whatever the engine does with its own
# bridge (Docker 29 with the nftables backend and ip-forward off forwards nothing).
DOCKER_BUILDKIT ?= 0

BUILD := plugin/build
WHEELS := $(BUILD)/wheels
CONTEXT := $(BUILD)/context
BASE_DIR := $(BUILD)/base
BUNDLE := $(BUILD)/pycni

.PHONY: wheels base-rootfs base-image context bundle plugin plugin-create plugin-enable plugin-disable \
	plugin-clean base-clean clean

# Wheels for the plugin's Python, 3.11 (python:3.11-slim-bookworm and Debian 12's python3).
wheels:
	$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else \
		"wheels: $(PYTHON) is %d.%d, the plugin runs Python 3.11: make wheels PYTHON=python3.11" % v)'
	mkdir -p $(WHEELS)
	$(PYTHON) -m pip wheel --disable-pip-version-check --wheel-dir $(WHEELS) .
	@echo "wheels: $$(ls $(WHEELS) | wc -l) files, $$(du -sh $(WHEELS) | cut -f1) in $(WHEELS)"

# Debian minbase (no Python) in $(BASE_DIR), from this host's Debian mirror (MIRROR=... to override).
base-rootfs:
	plugin/debootstrap-base.sh $(BASE_DIR) $(SUITE)

base-image:
	if $(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
		echo "base-image: $(BASE_IMAGE) exists, kept (make base-clean to rebuild)"; \
	else \
		plugin/debootstrap-base.sh $(BASE_DIR) $(SUITE); \
		tar --numeric-owner -C $(BASE_DIR) -c . | $(DOCKER) import - $(BASE_IMAGE); \
	fi

# The build context holds only what the Dockerfile copies.
context: wheels
	rm -rf $(CONTEXT)
	mkdir -p $(CONTEXT)/wheels
	cp Dockerfile plugin/entrypoint.sh plugin/iptables-wrapper.sh $(CONTEXT)/
	cp $(WHEELS)/*.whl $(CONTEXT)/wheels/

# The plugin's bundle (config.json + rootfs/), which `docker plugin create` takes on any host.
# A rebuild moves the tag: the image it leaves untagged is removed (it was 270 MB a build).
bundle: context
	old=$$($(DOCKER) image inspect -f '{{.Id}}' $(ROOTFS_IMAGE) 2>/dev/null || true); \
	DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) $(DOCKER) build --network host --build-arg BASE=$(BASE) \
		-t $(ROOTFS_IMAGE) -f $(CONTEXT)/Dockerfile $(CONTEXT); \
	new=$$($(DOCKER) image inspect -f '{{.Id}}' $(ROOTFS_IMAGE)); \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then $(DOCKER) rmi "$$old" >/dev/null || true; fi
	rm -rf --one-file-system $(BUNDLE)
	mkdir -p $(BUNDLE)/rootfs
	cid=$$($(DOCKER) create $(ROOTFS_IMAGE)); \
		trap '$(DOCKER) rm -f "$$cid" >/dev/null' EXIT; \
		$(DOCKER) export "$$cid" | tar --numeric-owner -C $(BUNDLE)/rootfs -xf -
	cp plugin/config.json $(BUNDLE)/config.json

plugin: bundle plugin-create

# `docker plugin create` from the bundle as it is (make bundle made it).
plugin-create:
	if $(DOCKER) plugin inspect $(PLUGIN) >/dev/null 2>&1; then \
		$(DOCKER) plugin rm -f $(PLUGIN); \
	fi
	$(DOCKER) plugin create $(PLUGIN) $(BUNDLE)
	@echo "plugin: $(PLUGIN) created (disabled), rootfs $$(du -sh --one-file-system $(BUNDLE)/rootfs | cut -f1)"

# The host dirs the plugin mounts (runc refuses a missing mount source), then enable.
HOST_DIRS ?= /etc/cni/net.d /opt/cni/bin /var/lib/pycni /var/lib/cni

plugin-enable:
	mkdir -p $(HOST_DIRS)
	$(DOCKER) plugin enable $(PLUGIN)

plugin-disable:
	$(DOCKER) plugin disable $(PLUGIN)

plugin-clean:
	if $(DOCKER) plugin inspect $(PLUGIN) >/dev/null 2>&1; then \
		$(DOCKER) plugin disable -f $(PLUGIN) 2>/dev/null || true; \
		$(DOCKER) plugin rm -f $(PLUGIN); \
	fi
	$(DOCKER) image rm $(ROOTFS_IMAGE) 2>/dev/null || true
	rm -rf --one-file-system $(BUNDLE) $(CONTEXT)

base-clean:
	$(DOCKER) image rm $(BASE_IMAGE) 2>/dev/null || true
	rm -rf --one-file-system $(BASE_DIR) $(BASE_DIR).done

clean: plugin-clean base-clean
	rm -rf --one-file-system $(BUILD)
