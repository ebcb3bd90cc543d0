"""A SPIRE process run by a systemd unit: found, started and stopped only through systemd.

The process of a unit is its main PID (``systemctl show -p MainPID``), and it only counts
when the kernel says it runs the expected binary as an expected user with the expected
``-config`` (the checks of :mod:`spire_migration.node.process`). The suite never starts a
second copy beside a unit systemd would restart: in pid mode :func:`refuse_unit_managed`
names the unit that runs (or would restart) the process and says to set ``unit = "..."``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

from spire_migration.errors import ProcessError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.node import process, systemd
from spire_migration.node.process import ProcInfo
from spire_migration.redact import redact, redact_argv
from spire_migration.retry import poll
from spire_migration.secret import Secret

#: States in which systemd runs, or is about to (re)start, a unit's process.
RUNNING_STATES = ("active", "activating", "reloading")


def config_arg(argv: Sequence[str]) -> str | None:
    """The value of ``-config`` in a SPIRE command line (``-config x``, ``--config=x``), if any.

    >>> config_arg(["spire-agent", "run", "-config", "/a.conf"]), config_arg(["x", "run", "--config=/b"])
    ('/a.conf', '/b')
    """
    for i, arg in enumerate(argv[1:], 1):
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "config":
            return value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def _same_path(a: str | Path | None, b: str | Path) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def unit_proc(unit: str, binary: Path, config: Path, uids: Iterable[int]) -> ProcInfo | None:
    """The unit's main process (None when the unit runs none), checked: binary, user, ``-config``."""
    pid = systemd.main_pid(unit)
    info = process.proc_info(pid) if pid else None
    if info is None:
        return None
    if not process.matches(info, binary, set(uids)):
        raise ProcessError(f"the main process of {unit} (pid {pid}) is not {binary.name}",
                           expected=f"{binary} run by root or the configured user",
                           found=f"{info.command} (uid {info.uid})",
                           remedy=f"point the target's unit at the unit that runs {binary.name}, or fix bin_dir")
    if not _same_path(config_arg(info.argv), config):
        raise ProcessError(f"{unit} runs {binary.name} with another config",
                           expected=f"-config {config}", found=info.command,
                           remedy=f"make ExecStart of {unit} pass -config {config}, or fix the target's config path")
    return info


def start(unit: str, what: str, find: Callable[[], ProcInfo | None], ready: Callable[[], bool],
          timeout: float) -> ProcInfo:
    """``systemctl start unit``, then poll (deadline) until it is active, its main process
    checked (``find``) and ``ready()``; a unit that fails is an error with its journal's last lines."""
    systemd.systemctl("start", "--", unit)

    def up() -> tuple[str, object] | None:
        st = systemd.state(unit)
        if st.get("ActiveState") == "failed" or st.get("LoadState") != "loaded":
            return "failed", st
        if st.get("ActiveState") != "active":
            return None
        try:
            info = find()
        except ProcessError as exc:   # the unit runs something else: no use waiting
            return "wrong", exc
        return ("up", info) if info is not None and ready() else None

    got = poll(up, timeout=timeout, what=f"{unit} ({what}) to be active and healthy", raise_on_timeout=False)
    if got and got[0] == "up":
        return got[1]  # type: ignore[return-value]
    if got and got[0] == "wrong":
        raise got[1]  # type: ignore[misc]
    raise _failed(unit, what, systemd.state(unit), None if got else timeout)


def _failed(unit: str, what: str, st: dict[str, str], timeout: float | None = None) -> ProcessError:
    state = f"{st.get('LoadState')}, {st.get('ActiveState')} ({st.get('SubState')}), result {st.get('Result')}"
    within = f" within {timeout:g} s" if timeout else ""
    return ProcessError(f"{unit} ({what}) did not start{within}", expected=f"{unit} active and {what} healthy",
                        found=f"{state}; journalctl -u {unit} -n 20:{systemd.journal_tail(unit)}",
                        remedy=f"read `journalctl -u {unit}` and `systemctl status {unit}`")


def stop(unit: str, find: Callable[[], ProcInfo | None]) -> ProcInfo | None:
    """``systemctl stop unit`` (systemd waits for the process); returns the process it ran, if any."""
    info = find()
    if systemd.show(unit, "ActiveState").get("ActiveState") in ("inactive", "failed") and info is None:
        return None
    systemd.systemctl("stop", "--", unit)
    if info is not None:
        poll(lambda: process.proc_info(info.pid) is None or abs(process.proc_info(info.pid).started_at
                                                                 - info.started_at) > 1.0,
             timeout=15.0, what=f"{unit}'s process {info.pid} to exit", error=ProcessError)
    return info


def refuse_stray(unit: str, name: str, stray: ProcInfo | None, section: str) -> None:
    """Refuse to start ``unit`` while a copy the suite started (pid file, socket owner) runs outside it:
    systemd would run a second one beside it."""
    if stray is not None and stray.pid != systemd.main_pid(unit):
        raise ProcessError(f"{name} pid {stray.pid} runs outside {unit}", expected=f"{name} run by {unit} only",
                           found=stray.command,
                           remedy=f"stop pid {stray.pid} (run once with the unit left empty in [{section}]: the "
                                  f"suite stops it by pid), then `systemctl start {unit}`")


def write_join_token_file(unit: str, config: Path, user: str, token: Secret) -> None:
    """Systemd mode: the token in the file agent.conf's ``join_token_file`` names (0600, the agent's user):
    the unit reads agent.conf only, and SPIRE reads that file at every start."""
    from spire_migration.config.hclconfig import load_config   # config -> node: imported where used

    section = load_config(config).section("agent")
    path = section.get("join_token_file")
    if not path or section.get("join_token"):
        raise ProcessError(f"{unit} cannot be given a join token", expected=f"{config} with "
                           'join_token_file = "<a 0600 file>" (the unit reads agent.conf only)',
                           found="join_token set in agent.conf" if section.get("join_token") else "no join_token_file",
                           remedy=f'add join_token_file = "/opt/spire/conf/agent/join_token" to the agent block of '
                                  f"{config} (Phase 3 under systemd)")
    path = Path(str(path))
    refuse_link(path)
    uids = process.allowed_uids(user) - {0, os.geteuid()}
    write_file(path, token.reveal() + "\n", mode=0o600, owner=(uids.pop(), -1) if uids else None)


# -- pid mode: never beside a unit ---------------------------------------------------
def managing_unit(binary: Path, info: ProcInfo | None) -> str | None:
    """The active unit that runs this SPIRE process, or that would (re)start ``binary``; None without
    systemd (then nothing is run: one ``stat``)."""
    if not systemd.booted():
        return None
    if info is not None:
        unit = systemd.unit_of_pid(info.pid)
        if unit and systemd.main_pid(unit) == info.pid:
            return unit
    return next(iter(units_running(binary)), None)


def units_running(binary: Path) -> list[str]:
    """Service units systemd runs (or is starting) whose ExecStart runs ``binary``."""
    listed = systemd.systemctl("list-units", "--type=service", "--state=" + ",".join(RUNNING_STATES),
                               "--plain", "--no-legend", "--no-pager", check=False).stdout
    names = [ln.split()[0] for ln in listed.splitlines() if ln.split() and ln.split()[0].endswith(".service")]
    if not names:
        return []
    shown = systemd.systemctl("show", "-p", "Id", "-p", "ExecStart", "--", *names, check=False).stdout
    found = []
    for block in shown.split("\n\n"):
        props = systemd.parse_show(block)
        if any(argv and _same_path(argv[0], binary) for argv in systemd.exec_start_argvs(props.get("ExecStart", ""))):
            found.append(props.get("Id", "?"))
    return found


def refuse_unit_managed(binary: Path, info: ProcInfo | None, section: str) -> None:
    """Pid mode: refuse when systemd runs this SPIRE process (it would restart what we stop, or
    run a second copy beside what we start)."""
    unit = managing_unit(binary, info)
    if unit:
        raise ProcessError(f"{binary.name} is run by systemd unit {unit}, but the target names no unit",
                           expected=f"[{section}] unit = the unit that runs {binary.name}",
                           found=f"{unit}{f' main PID {info.pid}' if info else ''}; the suite would stop a "
                                 "process systemd restarts, or start a second one beside it",
                           remedy=f'set unit = "{unit}" in [{section}] of the target description')


# -- the agent's unit must not hand it a join token ------------------------------------------
def join_token_in_exec_start(unit: str, flag_of: Callable[[Sequence[str]], str | None]) -> None:
    """Refuse an agent unit whose ExecStart passes ``-joinToken``/``-joinTokenFile``: after the migration
    it would keep attesting by join_token."""
    for argv in systemd.exec_start(unit):
        flag = flag_of(argv)
        if flag:
            raise ProcessError(f"{unit} starts spire-agent with {flag}", expected="an ExecStart without -joinToken "
                               "or -joinTokenFile (the agent reads agent.conf only)",
                               found=redact(" ".join(redact_argv(argv))),
                               remedy=f"remove {flag} from ExecStart of {unit} (`systemctl edit --full {unit}`, then "
                                      f"`systemctl daemon-reload`); in Phase 3 give the token with join_token_file "
                                      "in agent.conf; then run the migration again")
