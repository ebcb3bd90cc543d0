#!/usr/bin/env bash
# The project's tests: unit tests and lab tests (real SPIRE, swtpm, dockerd, Kubernetes), after
# setup for tests (which builds the Kubernetes lab once). Says which Kubernetes tier runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
.venv/bin/python -m lab.k8s tier
exec .venv/bin/python -m pytest tests -p no:cacheprovider -q "$@"
