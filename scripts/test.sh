#!/bin/bash
# The one test command: unit, integration (root, real netns and CNI plugins) and
# end-to-end (a real dockerd) layers, none of them allowed to skip.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test || exit 1
./scripts/start-dockerd.sh || exit 1
PYCNI_REQUIRE_ALL=1 python3 -m pytest tests -q -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit $rc
