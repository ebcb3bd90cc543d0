"""Lab hosts: one container each on the lab's engine, systemd as PID 1, its own /opt/spire.

Every host bind-mounts, read-only, the machine's /usr, the project's checkout and the Python
its venv points to (so ``<checkout>/.venv/bin/spire-migration`` runs inside), and SPIRE's
binaries at /opt/spire/bin; read-write, its own folders of the lab root at /opt/spire,
/etc/spire-migration and (agent hosts) the swtpm state /var/lib/swtpm. No --privileged:
CAP_SYS_ADMIN and a read-only /sys/fs/cgroup are what systemd needs here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from spire_migration.errors import MigrationError
from spire_migration.node.spire import SpireServer
from spire_migration.retry import poll

from ..errors import LabError
from .docker import Docker
from .image import AGENT_TARGET, SERVER_TARGET
from .layout import OPT_SPIRE, SERVER_SOCKET, TPM_STATE, FleetLayout, Host

PROJECT = Path(__file__).resolve().parents[2]
LAB_LABEL = "io.spire-migration.lab"


def venv_python() -> str:
    """The project's venv interpreter, at its path on the machine (and so in every host)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(sys.base_prefix):
        raise LabError("the fleet lab runs from the project's venv", expected="sys.prefix a venv",
                       found=sys.prefix, remedy="run .venv/bin/python -m lab up --fleet N")
    return os.path.join(sys.prefix, "bin", "python")


def python_mounts() -> list[str]:
    """The checkout, the venv (when outside the checkout) and the interpreter prefix it points to."""
    paths = dict.fromkeys(os.path.realpath(p) for p in (PROJECT, sys.prefix, sys.base_prefix))
    return [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]


def run_args(lay: FleetLayout, host: Host, image: str, bin_dir: Path) -> list[str]:
    """``docker run`` arguments of one host."""
    binds = ["/usr:/usr:ro", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
             *(f"{p}:{p}:ro" for p in python_mounts()),
             f"{host.opt_spire}:{OPT_SPIRE}", f"{bin_dir}:{OPT_SPIRE}/bin:ro",
             f"{host.etc_ssh}:/etc/ssh:ro", f"{host.etc_target}:/etc/spire-migration"]
    if host.role == "agent":
        binds.append(f"{host.tpm_dir}:{TPM_STATE}")
    args = ["run", "-d", "--name", lay.container(host.name), "--hostname", host.name,
            "--label", f"{LAB_LABEL}={lay.root}", "--cap-add", "SYS_ADMIN",
            "--network", lay.network, "--ip", host.ip, "--dns", "127.0.0.1",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:mode=1777,exec",
            "-e", "container=docker", "--stop-signal", "SIGRTMIN+3"]
    for b in binds:
        args += ["-v", b]
    target = SERVER_TARGET if host.role == "server" else AGENT_TARGET
    return args + [image, "/lib/systemd/systemd", f"--unit={target}"]


def start(docker: Docker, lay: FleetLayout, host: Host, image: str, bin_dir: Path) -> str:
    """Start the host's container; return its id."""
    return docker.run(*run_args(lay, host, image, bin_dir)).stdout.strip()


def container_ids(docker: Docker, lay: FleetLayout) -> list[str]:
    """Every container of this lab (running or not), found by its label."""
    out = docker.run("ps", "-aq", "--no-trunc", "--filter", f"label={LAB_LABEL}={lay.root}").stdout
    return out.split()


def system_state(docker: Docker, container: str) -> str:
    proc = docker.exec(container, "systemctl", "is-system-running", check=False, timeout=20)
    return proc.stdout.strip() or proc.stderr.strip()


def unit_active(docker: Docker, container: str, unit: str) -> bool:
    return docker.exec(container, "systemctl", "is-active", "--quiet", unit, check=False).returncode == 0


def journal(docker: Docker, container: str, unit: str) -> str:
    return docker.exec(container, "journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout


def wait_booted(docker: Docker, container: str, timeout: float = 60.0) -> str:
    """Poll until the host's systemd has finished booting (running, or degraded: then it says which)."""
    def booted() -> str | None:
        state = system_state(docker, container)
        return state if state in ("running", "degraded") else None
    state = poll(booted, timeout=timeout, what=f"systemd in {container} to boot", error=LabError)
    if state == "degraded":
        failed = docker.exec(container, "systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
        raise LabError(f"host {container} booted degraded", expected="systemctl is-system-running: running",
                       found=f"failed units: {failed.strip()}", remedy=f"docker exec {container} journalctl -b")
    return state


def wait_log(docker: Docker, container: str, unit: str, needle: str, timeout: float = 60.0) -> None:
    poll(lambda: needle in journal(docker, container, unit), timeout=timeout,
         what=f"{needle!r} in journalctl -u {unit} of {container}", error=LabError)


def memory_bytes(container: str) -> int | None:
    """The host's memory use now (cgroup v1 memory.usage_in_bytes, or v2 memory.current)."""
    for path in (f"/sys/fs/cgroup/memory/docker/{container}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/docker/{container}/memory.current"):
        try:
            return int(Path(path).read_text())
        except (OSError, ValueError):
            continue
    return None


class HostServer(SpireServer):
    """``spire-server`` run inside the server host (``docker exec``), on its default socket.

    Batch files go through the host's /opt/spire (bind-mounted from the lab root), never
    through a command line."""

    def __init__(self, docker: Docker, container: str, host: Host, timeout: float = 60.0) -> None:
        super().__init__(OPT_SPIRE / "bin" / "spire-server", SERVER_SOCKET, timeout)
        self.docker, self.container, self.host = docker, container, host

    def argv(self, *args: str) -> list[str]:
        return ["docker", "-H", self.docker.host, "exec", "-i", self.container, *super().argv(*args)]

    def healthy(self) -> bool:
        try:
            return self.run("healthcheck", check=False).returncode == 0
        except MigrationError:
            return False

    def _with_file(self, payload: dict[str, Any], *args: str) -> Any:
        tmp = self.host.opt_spire / "tmp"
        tmp.mkdir(mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="batch-", suffix=".json", dir=tmp)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh)
            return self.json(*args, str(OPT_SPIRE / "tmp" / Path(path).name))
        finally:
            os.unlink(path)

