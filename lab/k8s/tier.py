"""Which Kubernetes tier this machine can run: tier 2 (a real kubelet, real pods) or tier 1
(the control plane with a kwok node). One answer for CI's log line and the lab tests' skips."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .containerd import missing_tools
from .kubelet import KERNEL_TUNABLES

#: cgroup controllers the kubelet needs (v1 hierarchies, or v2 controllers).
CONTROLLERS = ("cpu", "memory", "pids")


@dataclass(frozen=True)
class Tier:
    tier: int             # 2: real kubelet pods; 1: control plane + kwok only
    why: str

    def line(self) -> str:
        what = "real kubelet pods (tier 2)" if self.tier == 2 else "control plane + kwok node only (tier 1)"
        return f"Kubernetes lab: {what}: {self.why}"


def _cgroups() -> tuple[bool, str]:
    base = Path("/sys/fs/cgroup")
    v2 = base / "cgroup.controllers"
    if v2.is_file():
        have = set(v2.read_text().split())
        kind = "cgroup v2"
    else:
        have = {c for c in CONTROLLERS if (base / c).is_dir()}
        kind = "cgroup v1"
    lacking = [c for c in CONTROLLERS if c not in have]
    if lacking:
        return False, f"{kind} lacks the {', '.join(lacking)} controller(s)"
    if not os.access(base / ("" if v2.is_file() else "memory"), os.W_OK):
        return False, f"{kind} is not writable here"
    return True, f"{kind} with {', '.join(CONTROLLERS)}"


def detect() -> Tier:
    """Tier 2 when the machine allows a kubelet: root, cgroups, writable sysctls (restored after),
    containerd/runc/CNI (``scripts/setup.sh --tests``), a C compiler for the kubelet's cgo build.
    ``SPIRE_LAB_KUBELET=0`` turns tier 2 off."""
    if os.environ.get("SPIRE_LAB_KUBELET") == "0":
        return Tier(1, "SPIRE_LAB_KUBELET=0")
    if os.geteuid() != 0:
        return Tier(1, "not root (the kubelet needs root)")
    ok, cgroups = _cgroups()
    if not ok:
        return Tier(1, cgroups)
    missing = missing_tools() + [t for t in ("go", "gcc") if shutil.which(t) is None]
    if missing:
        return Tier(1, f"missing {', '.join(missing)} (bash scripts/setup.sh --tests installs them)")
    unwritable = [t for t in KERNEL_TUNABLES if not os.access(Path("/proc/sys", t), os.W_OK)]
    if unwritable:
        return Tier(1, f"kernel tunables not writable (cannot be restored): {', '.join(unwritable)}")
    return Tier(2, f"{cgroups}; containerd, runc, CNI bridge; sysctls restored after")
