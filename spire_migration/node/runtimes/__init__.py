"""Workload runtimes: where the guide's Python application runs (docker, kubernetes or systemd).

>>> from spire_migration.config.target import Target
>>> rt = get_runtime(Target.from_dict({"workload": {"docker_host": "unix:///tmp/nowhere.sock"}}))
>>> rt.name, rt.spec.docker_host
('docker', 'unix:///tmp/nowhere.sock')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spire_migration.errors import WorkloadError
from spire_migration.node.runtimes.base import WorkloadInstance, WorkloadRuntime

if TYPE_CHECKING:
    from spire_migration.config.target import Target

__all__ = ["WorkloadInstance", "WorkloadRuntime", "get_runtime"]


def get_runtime(target: "Target") -> WorkloadRuntime:
    """The runtime named by ``target.workload.runtime``, set up by ``target.workload``."""
    kind = target.workload.runtime
    if kind == "docker":
        from spire_migration.node.runtimes.docker import DockerRuntime
        return DockerRuntime(target)
    if kind == "kubernetes":
        from spire_migration.node.runtimes.kubernetes import KubernetesRuntime
        return KubernetesRuntime(target)
    if kind == "systemd":
        from spire_migration.node.runtimes.systemd import SystemdRuntime
        return SystemdRuntime(target)
    raise WorkloadError("unknown workload runtime", expected="docker, kubernetes or systemd", found=repr(kind))
