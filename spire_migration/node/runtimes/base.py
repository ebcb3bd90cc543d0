"""The one interface every workload runtime (docker, kubernetes) implements.

A runtime runs the guide's Python application (``workload/mtls_app.py``) with
one phase's settings, and answers: is it reachable, what is running, what
would a deploy change, what do the logs say, does mTLS work right now.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from spire_migration.errors import WorkloadError

if TYPE_CHECKING:
    from spire_migration.config.target import Target, WorkloadSpec

#: Label (docker) / pod label (kubernetes) carrying the phase a workload was deployed for.
PHASE_LABEL = "phase"
#: Label holding a hash of everything deploy() sets: equal hash, nothing to do.
CONFIG_LABEL = "io.spire-migration.config-sha256"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class WorkloadInstance:
    """One running unit of the workload: a docker container or a kubernetes pod."""

    name: str
    id: str
    state: str                      # docker: running/exited/...; kubernetes: Running/Pending/...
    phase: int | None               # from the ``phase`` label; None when absent
    started_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


class WorkloadRuntime(ABC):
    """Deploys and observes the workload. Construct with :func:`get_runtime`."""

    name: str = ""

    def __init__(self, target: "Target") -> None:
        self.spec: WorkloadSpec = target.workload
        self.target = target
        self.peer_id = self.spec.peer_id or self.spec.spiffe_id
        self.agent_socket = Path(self.spec.agent_socket or target.agent.socket)

    def tpm_device(self, phase: int) -> tuple[str, str] | None:
        """(host device, path in the workload) when the workload gets the TPM: Phase 4
        with ``[workload] mount_tpm = true`` only (the guide calls the mount optional,
        and the app never opens the TPM)."""
        if phase == 4 and self.spec.mount_tpm:
            return str(self.target.tpm.device), "/dev/tpmrm0"
        return None

    # -- what each runtime provides -------------------------------------------------
    @abstractmethod
    def check_reachable(self) -> None:
        """Raise :class:`WorkloadError` naming the socket/API and what was found."""

    @abstractmethod
    def instances(self) -> list[WorkloadInstance]:
        """The workload's containers/pods, whatever their phase or state."""

    @abstractmethod
    def plan_deploy(self, phase: int, agent_id: str | None) -> list[str]:
        """What :meth:`deploy` would change, one human line each; [] when already so deployed."""

    @abstractmethod
    def deploy(self, phase: int, agent_id: str | None, timeout: float) -> list[WorkloadInstance]:
        """Replace the workload with *phase*'s settings; wait until it runs (deadline *timeout*)."""

    @abstractmethod
    def logs(self, instance: WorkloadInstance, since: datetime | None = None) -> str:
        """The instance's log text (stdout and stderr), optionally only after *since*."""

    @abstractmethod
    def check(self, timeout: float) -> dict:
        """Run the app's ``check`` mode inside the workload; its JSON line as a dict."""

    # -- shared ---------------------------------------------------------------------
    def selectors(self, instance: WorkloadInstance) -> set[str]:
        """The selectors SPIRE's workload attestor sees for ``instance`` (docker: its labels)."""
        return {f"docker:label:{k}:{v}" for k, v in instance.labels.items()}

    def wait_for_log(self, instance: WorkloadInstance, text: str, timeout: float,
                     since: datetime | None = None, poll: float = 0.5) -> str:
        """Poll the logs until a line contains *text*; return that line."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            last = self.logs(instance, since)
            for line in last.splitlines():
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                tail = "\n".join(last.splitlines()[-10:]) or "(empty log)"
                raise WorkloadError(f"{text!r} did not appear in the log of {instance.name}",
                                    expected=f"a line containing {text!r} within {timeout:g}s",
                                    found=tail,
                                    remedy="is the workload registered (entry with its docker selectors "
                                           "under this agent's ID) and is the agent up?")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def _check_phase(self, phase: int) -> None:
        if phase not in (3, 4):
            raise WorkloadError("unknown phase", expected="3 or 4", found=repr(phase))

    @staticmethod
    def _ro_mounts(specs: list[str]) -> list[tuple[str, str]]:
        """``host[:container[:ro]]`` strings as (host, container) pairs."""
        pairs = []
        for spec in specs:
            parts = spec.split(":")
            host = parts[0]
            pairs.append((host, parts[1] if len(parts) > 1 and parts[1] else host))
        return pairs

    def _resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else PROJECT_ROOT / path
