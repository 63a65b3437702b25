#!/usr/bin/env bash
# Integration tests: the real sluiced on loopback, driven by real clients.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
export SLUICE_BUILD=$(cd "$BUILD" && pwd)
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "${@:2}"
