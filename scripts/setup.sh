#!/usr/bin/env bash
# Install everything the suite and its lab need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only checks. Pins: SPIRE in lab/spire_build.py.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-dev libtss2-tcti-swtpm0 docker.io iproute2
              pkg-config gcc util-linux)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

here=$(pwd -P)
installed=$(cd / && python3 -c "import spire_migration, os; print(os.path.dirname(os.path.dirname(os.path.realpath(spire_migration.__file__))))" 2>/dev/null || true)
if [ "$installed" != "$here" ] \
   || ! python3 -c "import tpm2_pytss, hcl2, pytest_bdd, testinfra, kubernetes, spiffe, spiffetls, docker" 2>/dev/null; then
  echo "setup: pip install -e . (tpm2-pytss builds from source: about 20 s)"
  python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "Running pip as the 'root' user" || true
fi

echo "setup: SPIRE binaries in $(python3 -m lab build | head -n 1)"
# The Kubernetes lab's control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok):
# about 10 minutes the first time on 2 cores, about 1 s once cached.
echo "setup: Kubernetes binaries in $(python3 -m lab build --kubernetes | tail -n 1)"
