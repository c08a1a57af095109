#!/usr/bin/env bash
# Quick start, command 2: set everything up and run the whole test suite.
# Extra args go to pytest (e.g. scripts/test.sh -k e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
set +e
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no tests (e.g. a -k that matches nothing): not a failure here.
[[ $rc -eq 5 ]] && rc=0
exit $rc
