"""systemd, as the suite talks to it: ``systemctl`` and ``journalctl``, output captured.

Nothing secret ever goes on these command lines (unit names, properties, times only).
Whether systemd runs at all is :func:`booted` (sd_booted(3): ``/run/systemd/system`` exists),
so a machine without systemd (the suite's own single-host lab) pays one ``stat`` and no command.

>>> parse_show("MainPID=42\\nActiveState=active\\nExecStart=\\n")
{'MainPID': '42', 'ActiveState': 'active', 'ExecStart': ''}
>>> parse_cgroup_unit("12:pids:/\\n1:name=systemd:/system.slice/spire-agent.service\\n")
'spire-agent.service'
>>> parse_cgroup_unit("0::/system.slice/mtls-app.service\\n"), parse_cgroup_unit("0::/user.slice/user-0.slice/session-3.scope")
('mtls-app.service', None)
>>> exec_start_argvs("{ path=/opt/spire/bin/spire-agent ; argv[]=/opt/spire/bin/spire-agent run -config /a.conf ; "
...                  "ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }")
[['/opt/spire/bin/spire-agent', 'run', '-config', '/a.conf']]
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from spire_migration.errors import ProcessError, TargetError
from spire_migration.redact import redact

#: A unit name as systemd spells one (never an option: no leading '-').
UNIT_NAME = re.compile(r"[A-Za-z0-9_:.\\@][A-Za-z0-9_:.\\@-]*\.service")
COMMAND_TIMEOUT_S = 90.0
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
        "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
_ARGV = re.compile(r"argv\[\]=(.*?) ; ignore_errors=")


def check_unit_name(unit: str, key: str) -> str:
    """A target's ``unit`` key: empty (pid mode) or a ``.service`` unit name."""
    if unit and not UNIT_NAME.fullmatch(unit):
        raise TargetError(f"{key} is not a systemd service unit name", expected='e.g. "spire-agent.service"',
                          found=repr(unit), remedy=f'set {key} = "<name>.service", or leave it empty (pid mode)')
    return unit


def booted() -> bool:
    """True when systemd manages this machine (sd_booted(3))."""
    return os.path.isdir("/run/systemd/system")


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``systemctl``/``journalctl``/... with output captured; a missing command is a ProcessError."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=_ENV,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProcessError(f"`{' '.join(argv[:3])}` did not run", expected="systemd's tools on this machine",
                           found=f"{type(exc).__name__}: {exc}", remedy="is systemd running here?") from exc


def systemctl(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``systemctl ARGS``; with ``check`` a non-zero exit is a ProcessError naming its output."""
    res = run(["systemctl", *args], timeout=timeout)
    if check and res.returncode != 0:
        raise ProcessError(f"`systemctl {' '.join(args)}` failed", expected="exit code 0",
                           found=f"exit {res.returncode}: {redact((res.stderr or res.stdout).strip()[-800:])}")
    return res


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show`` output (``Key=Value`` lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def show(unit: str, *props: str) -> dict[str, str]:
    """Properties of ``unit`` (``systemctl show -p P ... unit``)."""
    args = [a for p in props for a in ("-p", p)]
    return parse_show(systemctl("show", *args, "--", unit).stdout)


def main_pid(unit: str) -> int:
    """The unit's main PID (0: not running)."""
    value = show(unit, "MainPID").get("MainPID", "0")
    return int(value) if value.isdigit() else 0


def is_active(unit: str) -> bool:
    """``systemctl is-active unit`` says active."""
    return systemctl("is-active", "--", unit, check=False).stdout.strip() == "active"


def state(unit: str) -> dict[str, str]:
    """ActiveState, SubState, Result, MainPID, User of a unit."""
    return show(unit, "ActiveState", "SubState", "Result", "MainPID", "User", "LoadState")


def exec_start_argvs(value: str) -> list[list[str]]:
    """The command lines of an ``ExecStart`` property (one per ``argv[]=``)."""
    return [shlex.split(m.group(1)) for m in _ARGV.finditer(value)]


def exec_start(unit: str) -> list[list[str]]:
    """The unit's ExecStart command lines (``systemctl show -p ExecStart``)."""
    return exec_start_argvs(show(unit, "ExecStart").get("ExecStart", ""))


def parse_cgroup_unit(text: str) -> str | None:
    """The ``.service`` unit a process belongs to, from ``/proc/<pid>/cgroup`` (v1 ``name=systemd`` or v2)."""
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers in ("name=systemd", ""):
            for part in reversed(path.strip().split("/")):
                if part.endswith(".service"):
                    return part
    return None


def unit_of_pid(pid: int) -> str | None:
    """The service unit whose cgroup holds ``pid``; None without systemd (no command is run)."""
    if not booted():
        return None
    try:
        return parse_cgroup_unit(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None


def journal(unit: str, *, since: datetime | None = None, lines: int | None = None, cat: bool = True) -> str:
    """The unit's journal (``journalctl -u unit --no-pager``; ``-o cat``: the messages alone, as the
    program wrote them), optionally since a time or only the last ``lines``; "" when there are none."""
    argv = ["journalctl", "-u", unit, "--no-pager"] + (["-o", "cat"] if cat else [])
    if since is not None:
        argv += ["--since", since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")]
    if lines is not None:
        argv += ["-n", str(lines)]
    res = run(argv)
    return res.stdout if res.returncode == 0 else ""


def journal_tail(unit: str, lines: int = 20) -> str:
    """The last lines of the unit's journal, redacted, for an error message."""
    text = journal(unit, lines=lines, cat=False).strip()
    return "\n" + redact(text) if text else "(the journal has no lines for this unit)"
