#!/usr/bin/env bash
# Regenerate the hash-pinned lock files from pyproject.toml (dependencies + the `lab` and `fleet` extras)
# and requirements-build.in, with pip-tools in a throwaway virtual environment:
#   requirements.lock        every package the suite, the lab, the fleet engine (ansible-core) and the tests import
#   requirements-build.lock  what building tpm2-pytss (sdist) and the project needs, same versions
# scripts/setup.sh installs both with `pip install --require-hashes`. Run after changing a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d /tmp/lock-tools.XXXXXX)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q --disable-pip-version-check "pip-tools>=7.4,<8"
compile=("$tools/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
         --resolver=backtracking)
# One resolution for everything, so the build set uses the versions the run set uses.
"${compile[@]}" --extra lab --extra fleet -o requirements.lock pyproject.toml requirements-build.in
"${compile[@]}" -c requirements.lock -o requirements-build.lock requirements-build.in
echo "lock: $(grep -c '==' requirements.lock) packages in requirements.lock, $(grep -c '==' requirements-build.lock) in requirements-build.lock"
