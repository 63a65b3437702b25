#!/usr/bin/env bash
# Integration tests: the real sluiced on loopback, driven by real clients.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
export SLUICE_BUILD=$(cd "$BUILD" && pwd)
# Test files given after BUILD run alone; otherwise the whole directory.
where=(tests/integration)
for a in "${@:2}"; do
    case $a in *.py | *.py::*) where=() ;; esac
done
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "${where[@]}" "${@:2}"
