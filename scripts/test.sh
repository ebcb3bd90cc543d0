#!/usr/bin/env bash
# The project's tests: unit tests and lab tests (real SPIRE, swtpm, dockerd), after setup.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest tests -p no:cacheprovider -q "$@"
