"""The workload as a systemd service: ``[workload] runtime = "systemd"``, ``unit = "mtls-app.service"``.

The unit runs the app (``mtls_app.py demo``: server and client in one process) with its own
``User=`` and ``Environment=`` (``SPIFFE_ENDPOINT_SOCKET``, ``PEER_SPIFFE_ID``...). The instance is
the unit's main process. A deploy writes the phase (and, for Phase 4, ``SPIRE_AGENT_ID``) in a
runtime drop-in (``/run/systemd/system/<unit>.d/50-spire-migration.conf``: gone at reboot, the
unit's own file untouched), then ``systemctl daemon-reload`` and ``systemctl restart``, and waits
until the unit is active. Logs are ``journalctl -u <unit> -o cat``; ``check`` runs the app's
check mode with the unit's command, user and environment.

>>> parse_environment('SPIFFE_ENDPOINT_SOCKET=unix:///run/a.sock "MSG=a b" SPIRE_MIGRATION_PHASE=4')
{'SPIFFE_ENDPOINT_SOCKET': 'unix:///run/a.sock', 'MSG': 'a b', 'SPIRE_MIGRATION_PHASE': '4'}
>>> check_argv(["/usr/bin/python3", "/app/mtls_app.py", "demo", "--addr", "127.0.0.1:9443", "--interval", "2"], 5)
['/usr/bin/python3', '/app/mtls_app.py', 'check', '--timeout', '5', '--addr', '127.0.0.1:9443']
"""

from __future__ import annotations

import json
import pwd
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from spire_migration.errors import MigrationError, WorkloadError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.node import process, systemd
from spire_migration.node.runtimes.base import PHASE_LABEL, WorkloadInstance, WorkloadRuntime
from spire_migration.retry import poll

DROP_IN_DIR = Path("/run/systemd/system")
DROP_IN = "50-spire-migration.conf"
PHASE_ENV = "SPIRE_MIGRATION_PHASE"
MODES = ("server", "client", "demo")
_KEEP = ("--addr", "--peer-id")


def parse_environment(value: str) -> dict[str, str]:
    """``systemctl show -p Environment`` (space-separated, shell-quoted ``K=V``) as a dict."""
    out = {}
    for item in shlex.split(value):
        key, sep, val = item.partition("=")
        if sep:
            out[key] = val
    return out


def check_argv(argv: list[str], timeout: float) -> list[str]:
    """The unit's app command line turned into the app's ``check`` mode (``--addr``/``--peer-id`` kept)."""
    idx = next((i for i, a in enumerate(argv) if a in MODES), None)
    if idx is None:
        raise WorkloadError("the workload unit does not run mtls_app.py in a known mode",
                            expected=f"ExecStart ending in mtls_app.py {'|'.join(MODES)} [options]",
                            found=" ".join(argv), remedy="run the guide's app in the unit (mtls_app.py demo)")
    out = argv[:idx] + ["check", "--timeout", f"{timeout:g}"]
    rest = argv[idx + 1:]
    for i, arg in enumerate(rest):
        if arg in _KEEP and i + 1 < len(rest):
            out += [arg, rest[i + 1]]
        elif arg.partition("=")[0] in _KEEP and "=" in arg:
            out.append(arg)
    return out


class SystemdRuntime(WorkloadRuntime):
    name = "systemd"

    def __init__(self, target) -> None:
        super().__init__(target)
        self.unit = systemd.check_unit_name(self.spec.unit, "workload.unit")

    @property
    def drop_in(self) -> Path:
        return DROP_IN_DIR / f"{self.unit}.d" / DROP_IN

    def _show(self) -> dict[str, str]:
        return systemd.show(self.unit, "LoadState", "ActiveState", "SubState", "MainPID", "User",
                            "Environment", "ExecStart", "WorkingDirectory")

    def check_reachable(self) -> None:
        if not systemd.booted():
            raise WorkloadError("systemd does not run this machine", expected="systemd as PID 1 (/run/systemd/system)",
                                found="no /run/systemd/system", remedy='set [workload] runtime to "docker" or "kubernetes"')
        try:
            load = self._show().get("LoadState")
        except MigrationError as exc:
            raise WorkloadError(f"systemctl does not answer for {self.unit}", expected="systemctl show",
                                found=exc.message) from exc
        if load != "loaded":
            raise WorkloadError(f"the workload unit {self.unit} is not loaded", expected="a loaded service unit",
                                found=f"LoadState={load}", remedy=f"install {self.unit}, or set [workload] unit")

    # -- what is running ----------------------------------------------------------------
    def instances(self) -> list[WorkloadInstance]:
        props = self._show()
        if props.get("LoadState") != "loaded":
            return []
        pid = int(props.get("MainPID") or 0)
        info = process.proc_info(pid) if pid else None
        running = props.get("ActiveState") == "active" and info is not None
        phase = parse_environment(props.get("Environment", "")).get(PHASE_ENV, "")
        labels = {PHASE_LABEL: phase} if phase else {}
        labels["user"] = props.get("User") or "root"
        return [WorkloadInstance(
            name=self.unit, id=str(pid), state="running" if running else props.get("SubState") or "inactive",
            phase=int(phase) if phase.isdigit() else None,
            started_at=datetime.fromtimestamp(info.started_at, timezone.utc) if info else None, labels=labels)]

    def selectors(self, instance: WorkloadInstance) -> set[str]:
        """The SPIRE unix/systemd selectors the unit's process shows the agent."""
        user = instance.labels.get("user", "root")
        try:
            uid = pwd.getpwnam(user).pw_uid if not user.isdigit() else int(user)
        except KeyError:
            uid = -1
        return {f"unix:uid:{uid}", f"unix:user:{user}", f"systemd:id:{self.unit}"}

    # -- deploy ---------------------------------------------------------------------------
    def _drop_in_text(self, phase: int, agent_id: str | None) -> str:
        lines = ["# written by spire-migration: the phase this workload was deployed for", "[Service]",
                 f"Environment={PHASE_ENV}={phase}"]
        if phase == 4 and agent_id:
            lines.append(f'Environment="SPIRE_AGENT_ID={agent_id}"')
        return "\n".join(lines) + "\n"

    def plan_deploy(self, phase: int, agent_id: str | None) -> list[str]:
        self._check_phase(phase)
        want = self._drop_in_text(phase, agent_id)
        try:
            have = self.drop_in.read_text()
        except OSError:
            have = None
        active = [i for i in self.instances() if i.state == "running"]
        if have == want and active:
            return []
        return [f"write {self.drop_in} (phase {phase}, SPIRE_AGENT_ID {agent_id if phase == 4 and agent_id else 'not set'})",
                f"systemctl daemon-reload; systemctl restart {self.unit} (Workload API {self.agent_socket}, "
                f"authorizes {self.peer_id}) and wait until active"]

    def deploy(self, phase: int, agent_id: str | None, timeout: float) -> list[WorkloadInstance]:
        self.check_reachable()
        if not self.plan_deploy(phase, agent_id):
            return self.instances()
        refuse_link(self.drop_in)
        write_file(self.drop_in, self._drop_in_text(phase, agent_id), mode=0o644)
        systemd.systemctl("daemon-reload")
        systemd.systemctl("restart", "--", self.unit)
        got = poll(lambda: [i for i in self.instances() if i.state == "running" and i.phase == phase],
                   timeout=timeout, what=f"{self.unit} to be active", raise_on_timeout=False)
        if not got:
            raise WorkloadError(f"{self.unit} is not running", expected=f"{self.unit} active within {timeout:g} s",
                                found=f"{[(i.state, i.phase) for i in self.instances()]}; journalctl -u {self.unit}:"
                                      f"{systemd.journal_tail(self.unit)}",
                                remedy=f"read `journalctl -u {self.unit}` and `systemctl status {self.unit}`")
        return self.instances()

    # -- observe --------------------------------------------------------------------------
    def logs(self, instance: WorkloadInstance, since: datetime | None = None) -> str:
        return systemd.journal(self.unit, since=since)

    def check(self, timeout: float) -> dict:
        props = self._show()
        if props.get("ActiveState") != "active":
            raise WorkloadError(f"{self.unit} is not running", expected="active", found=props.get("ActiveState"),
                                remedy="deploy the workload")
        commands = systemd.exec_start_argvs(props.get("ExecStart", ""))
        if not commands:
            raise WorkloadError(f"{self.unit} has no ExecStart", expected="the app's command line", found="none")
        argv = check_argv(commands[-1], timeout)
        env = process.daemon_env(parse_environment(props.get("Environment", "")))
        cwd = props.get("WorkingDirectory", "").lstrip("!-")
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 20, env=env,
                                 user=props.get("User") or None, cwd=cwd if cwd and cwd != "~" else None,
                                 stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkloadError(f"`check` of {self.unit} did not run", expected="the app's check mode",
                                found=f"{type(exc).__name__}: {exc}") from exc
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise WorkloadError(f"`check` of {self.unit} printed no JSON line", expected="one JSON line",
                                found=f"exit {res.returncode}; stderr: {res.stderr[-500:]}")
        result = json.loads(lines[-1])
        result["exit_code"] = res.returncode
        return result
