#!/bin/bash
# The one test command: unit, integration (root, real netns and CNI plugins) and
# end-to-end (a real dockerd) layers, none of them allowed to skip; then the
# end-to-end layer again on Docker 28 and 26 (scripts/engines.sh), one after the other.
#
#   scripts/test.sh                 everything
#   PYCNI_ENGINES="20" scripts/test.sh    only the system's engine
#   scripts/test.sh -k parity       extra pytest arguments go to every run
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1
ENGINES=${PYCNI_ENGINES:-"20 28 26"}
# Docker 26 runs a representative part of the layer: the CI run has 25 minutes.
E2E_26=${PYCNI_E2E_26:-"tests/e2e/test_parity.py tests/e2e/test_driver_basics.py tests/e2e/test_ports.py tests/e2e/test_engines.py"}
export PYCNI_REQUIRE_ALL=1

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
for engine in $ENGINES; do
    ./scripts/engines.sh start "$engine" || { result[$engine]="did not start"; failed=1; continue; }
    version=$(/usr/bin/docker version -f '{{.Server.Version}}')
    echo "=== Docker $version (engine $engine) ==="
    if [ "$engine" = 20 ]; then
        run_pytest tests "$@"
    elif [ "$engine" = 26 ]; then
        # shellcheck disable=SC2086 # a list of paths
        run_pytest $E2E_26 "$@"
    else
        run_pytest tests/e2e "$@"
    fi
    rc=$?
    if [ $rc -eq 0 ]; then result[$engine]="passed ($version)"; else
        result[$engine]="FAILED ($version)"; failed=1; fi
done
# Leave the system's own engine running, as it was.
case " $ENGINES " in *" 20 "*) [ "${ENGINES##* }" = 20 ] || ./scripts/engines.sh start 20 ;; esac
echo "=== summary ==="
for engine in $ENGINES; do
    echo "Docker $engine: ${result[$engine]}"
done
exit $failed
