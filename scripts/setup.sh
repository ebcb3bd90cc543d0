#!/usr/bin/env bash
# Install what the suite needs on a fresh Debian 12 machine (run as root), building only what
# the command at hand uses. Idempotent: a second run only checks.
#
#   bash scripts/setup.sh           the main job: Debian packages, the project's virtual
#                                   environment ./.venv, SPIRE (built once, cached)
#   bash scripts/setup.sh --tests   also what the tests need: containerd, runc, CNI plugins and
#                                   chromium; the Kubernetes control plane and the kubelet
#                                   (built once, cached in ~/.cache/spire-tpm-migration)
#
# Python: nothing is installed into the machine's interpreter. ./.venv gets the hash-pinned
# dependencies (requirements-build.lock, then requirements.lock, both `--require-hashes`; built
# without build isolation, so no unpinned package is fetched), then this checkout, editable.
# Pins: SPIRE in lab/spire_build.py, Kubernetes in lab/k8s/gobuild.py, Python in the lock files
# (scripts/lock.sh regenerates them).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) echo "usage: bash scripts/setup.sh [--tests]" >&2; exit 4 ;;
esac

# openssh-server: sshd for the fleet lab's hosts (`lab up --fleet N`), each runs its own; the
# machine's own ssh service is never started by this script (see below).
APT_PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-dev libtss2-tcti-swtpm0 docker.io iproute2
              pkg-config gcc util-linux python3-venv openssh-server openssh-client systemd)
((tests)) && APT_PACKAGES+=(containerd runc containernetworking-plugins chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  # Packages must not start services on this machine (openssh-server would start sshd): Debian's
  # policy-rc.d (exit 101) says so to invoke-rc.d for the time of the install, unless one exists.
  policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    made_policy=1
    printf '#!/bin/sh\n# setup.sh: no service starts during its install\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  if ((made_policy)); then rm -f "$policy"; trap - EXIT; fi
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true   # the lab's hosts run their own
  fi
fi

# The project's environment. Its stamp is the hash of what it was made from; a moved checkout
# (the editable install points elsewhere) or a changed lock makes it again.
VENV=.venv
here=$(pwd -P)
want=$(cat requirements.lock requirements-build.lock pyproject.toml | sha256sum | cut -d' ' -f1)
have=$(cat "$VENV/.setup-stamp" 2>/dev/null || true)
installed=$(cd / && "$here/$VENV/bin/python" -c "import spire_migration, os; print(os.path.dirname(os.path.dirname(os.path.realpath(spire_migration.__file__))))" 2>/dev/null || true)
if [ "$have" != "$want" ] || [ "$installed" != "$here" ]; then
  t0=$SECONDS
  echo "setup: Python environment $VENV (hash-pinned; tpm2-pytss builds against libtss2 the first time)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input)
  "${pip[@]}" --require-hashes -r requirements-build.lock
  "${pip[@]}" --require-hashes --no-build-isolation -r requirements.lock
  "${pip[@]}" --no-deps --no-build-isolation -e .
  echo "$want" > "$VENV/.setup-stamp"
  echo "setup: $VENV ready in $((SECONDS - t0)) s"
fi

PY="$VENV/bin/python"
echo "setup: SPIRE binaries in $("$PY" -m lab build | tail -n 1)"
if ((tests)); then
  # The Kubernetes lab (control plane, kwok, kubelet): long the first time on 2 cores, about
  # 1 s once cached. Only the tests and `python -m lab up --kubernetes|--kubelet` use it.
  echo "setup: Kubernetes binaries in $("$PY" -m lab build --kubelet | tail -n 1 | xargs dirname)"
fi
