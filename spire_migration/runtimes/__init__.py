"""Workload runtimes: where the guide's Python application runs (docker or kubernetes).

>>> from spire_migration.target import Target
>>> rt = get_runtime(Target(), docker_host="unix:///tmp/nowhere.sock")
>>> rt.name, rt.spec.docker_host
('docker', 'unix:///tmp/nowhere.sock')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import WorkloadError
from .base import WorkloadInstance, WorkloadRuntime

if TYPE_CHECKING:
    from ..target import Target

__all__ = ["WorkloadInstance", "WorkloadRuntime", "get_runtime"]


def get_runtime(target: "Target", **lab_overrides: Any) -> WorkloadRuntime:
    """The runtime named by ``target.workload.runtime``.

    *lab_overrides* replace fields of ``target.workload`` for this runtime only
    (a lab passes its own ``docker_host``, ``agent_socket``, ``ro_mounts``...).
    """
    kind = lab_overrides.get("runtime", target.workload.runtime)
    if kind == "docker":
        from .docker import DockerRuntime
        return DockerRuntime(target, **lab_overrides)
    if kind == "kubernetes":
        from .kubernetes import KubernetesRuntime
        return KubernetesRuntime(target, **lab_overrides)
    raise WorkloadError("unknown workload runtime", expected="docker or kubernetes", found=repr(kind))
