#!/bin/bash
# The one test command: unit, integration (root, real netns and CNI plugins) and
# end-to-end (a real dockerd) layers, none of them allowed to skip, over a matrix of
# engines and CNI plugin sets. Every engine and plugin set is installed from nothing when
# missing (scripts/engines.sh, scripts/extras.sh). The matrix, for CI's 40 minutes:
#
#   cell        engine          plugins   runs
#   20          20.10 (Debian)  1.1.1     unit, integration, e2e (representative part)
#   26          26.1            1.1.1     e2e (representative part)
#   28          28.5            1.1.1     e2e (representative part + what 28 added)
#   29          29.7 iptables   1.9.1     integration, e2e (the whole layer), and the
#                                         managed plugin as the driver of the basics
#   29nft       29.7 nftables   1.9.1     e2e (what touches the firewall), and the same
#                                         managed-plugin run
#
# Every cell also runs the managed plugin's lifecycle (registry install, upgrade with
# containers running, its mounts, direct mode where the engine allows).
#
#   scripts/test.sh                           every cell
#   PYCNI_CELLS="20" scripts/test.sh          some cells (PYCNI_ENGINES is the old name)
#   scripts/test.sh -k parity                 extra pytest arguments go to every run
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1
./scripts/extras.sh all || exit 1
CELLS=${PYCNI_CELLS:-${PYCNI_ENGINES:-"20 26 28 29 29nft"}}
CNI19=$(./scripts/extras.sh path cni-1.9)

# The representative part older engines run: basics, parity with the bridge, ports, IPAM,
# named lists, the engine-specific tests and the clients.
E2E_OLD="tests/e2e/test_driver_basics.py tests/e2e/test_parity.py tests/e2e/test_ports.py
tests/e2e/test_engines.py tests/e2e/test_named_conflists.py tests/e2e/test_ipam.py
tests/e2e/test_cni11.py"
E2E_26=${PYCNI_E2E_26:-"tests/e2e/test_parity.py tests/e2e/test_driver_basics.py tests/e2e/test_ports.py tests/e2e/test_engines.py"}
E2E_28="$E2E_OLD tests/e2e/test_recovery.py tests/e2e/test_operators.py"
# With the nftables backend, what touches the firewall: isolation, ports, masquerade, lists
# with their own rules, another runtime's rules beside ours.
E2E_NFT="tests/e2e/test_driver_basics.py tests/e2e/test_parity.py tests/e2e/test_ports.py
tests/e2e/test_named_conflists.py tests/e2e/test_cni11.py tests/e2e/test_podman.py
tests/e2e/test_compose.py"
# The same tests with the managed plugin as the driver (PYCNI_TEST_DRIVER=managed).
E2E_MANAGED="tests/e2e/test_driver_basics.py tests/e2e/test_parity.py tests/e2e/test_ports.py
tests/e2e/test_ipam.py tests/e2e/test_cni11.py"
LIFECYCLE=tests/e2e/test_plugin_lifecycle.py
export PYCNI_REQUIRE_ALL=1
# One cell per run starts its engine from an empty prefix, so that an install step that works
# only the second time fails here, not on a user's (or CI's) new machine.
FRESH_CELL=${PYCNI_FRESH_CELL:-26}
FRESH_PREFIX=$(mktemp -d /tmp/pycni-fresh-engines.XXXXXX)
trap 'rm -rf "$FRESH_PREFIX"' EXIT

run_pytest() {
    python3 -m pytest -q -p no:cacheprovider "$@"
    local rc=$?
    if [ $rc -eq 5 ]; then
        echo "pytest collected no tests: failing" >&2
        rc=1
    fi
    return $rc
}

declare -A result
failed=0
started=$SECONDS
for cell in $CELLS; do
    t0=$SECONDS
    if ! ./scripts/engines.sh available "$cell"; then
        # Only a clone without ../shared lacks engine 29: say so, and go on.
        echo "=== cell $cell: skipped, its engine is not available here (no ../shared/engines) ==="
        result[$cell]="skipped: engine not available"
        continue
    fi
    prefix=()
    [ "$cell" = "$FRESH_CELL" ] && prefix=(env "PYCNI_ENGINES_DIR=$FRESH_PREFIX")
    if ! "${prefix[@]}" ./scripts/engines.sh start "$cell"; then
        result[$cell]="FAILED: engine did not start"; failed=1; continue
    fi
    version=$(/usr/bin/docker version -f '{{.Server.Version}}')
    plugins=1.1.1
    unset PYCNI_TEST_CNI_BIN_DIR
    case "$cell" in 29|29nft) plugins=1.9.1; export PYCNI_TEST_CNI_BIN_DIR=$CNI19 ;; esac
    echo "=== cell $cell: Docker $version, CNI plugins $plugins ==="
    # shellcheck disable=SC2086 # lists of paths
    case "$cell" in
        20) run_pytest tests/unit tests/integration $E2E_28 tests/e2e/test_docker_hardening.py \
                tests/e2e/test_docker_semantics.py $LIFECYCLE "$@" ;;
        26) run_pytest $E2E_26 $LIFECYCLE "$@" ;;
        28) run_pytest $E2E_28 $LIFECYCLE "$@" ;;
        29) run_pytest tests/integration tests/e2e "$@" &&
                PYCNI_TEST_DRIVER=managed run_pytest $E2E_MANAGED "$@" ;;
        29nft) run_pytest $E2E_NFT $LIFECYCLE "$@" &&
                PYCNI_TEST_DRIVER=managed run_pytest $E2E_MANAGED "$@" ;;
    esac
    rc=$?
    minutes=$(( (SECONDS - t0) / 60 ))m$(( (SECONDS - t0) % 60 ))s
    if [ $rc -eq 0 ]; then result[$cell]="passed ($version, plugins $plugins, $minutes)"; else
        result[$cell]="FAILED ($version, plugins $plugins, $minutes)"; failed=1; fi
done
# Leave the system's own engine running, as it was (and none from the fresh prefix).
case " $CELLS " in
    *" 20 "*) [ "${CELLS##* }" = 20 ] || ./scripts/engines.sh start 20 ;;
    *) [ "${CELLS##* }" = "$FRESH_CELL" ] && ./scripts/engines.sh stop ;;
esac
echo "=== matrix ($(( (SECONDS - started) / 60 )) min) ==="
for cell in $CELLS; do
    printf '  %-6s %s\n' "$cell" "${result[$cell]}"
done
exit $failed
