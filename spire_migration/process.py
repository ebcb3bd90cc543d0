"""Start and stop exactly the processes we mean: by pid, never by name.

A pid file alone can lie (the process died and the pid was reused), so a pid
only counts when ``/proc/<pid>/cmdline`` still names the expected binary.
When there is no pid file, the pid that owns a unix socket is the fallback.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ProcessError
from .redact import redact
from .retry import poll

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcInfo:
    """A live process as /proc shows it."""

    pid: int
    argv: tuple[str, ...]
    started_at: float  # seconds since the epoch

    @property
    def command(self) -> str:
        return redact(" ".join(self.argv))


@functools.cache
def _boot_time() -> float:
    """When the machine booted, to 10 ms (/proc/stat's btime is whole seconds: up to 1 s early).
    Read once, so one process's times of one pid always compare equal."""
    try:
        return time.time() - float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ProcessError("cannot read the boot time", expected="the uptime in /proc/uptime",
                           found=str(exc)) from exc


def proc_info(pid: int) -> ProcInfo | None:
    """The process with this pid, or None when it is gone (zombies count as gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    started = _boot_time() + int(fields[19]) / _CLK_TCK
    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return ProcInfo(pid, argv, started)


def matches(info: ProcInfo, binary: str | Path) -> bool:
    """True when the process runs ``binary`` (compared by basename of argv[0] or exe)."""
    name = Path(binary).name
    if info.argv and Path(info.argv[0]).name == name:
        return True
    try:
        return Path(os.readlink(f"/proc/{info.pid}/exe")).name == name
    except OSError:
        return False


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def socket_owner(socket_path: Path) -> int | None:
    """The pid of the process listening on a unix socket, from /proc/net/unix."""
    try:
        inode = None
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == str(socket_path) and parts[5] == "01":
                inode = parts[6]
                break
        if inode is None:
            return None
        needle = f"socket:[{inode}]"
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                for fd in (pid_dir / "fd").iterdir():
                    if os.readlink(fd) == needle:
                        return int(pid_dir.name)
            except OSError:
                continue
    except OSError:
        return None
    return None


def find(binary: str | Path, pid_file: Path, socket_path: Path | None = None) -> ProcInfo | None:
    """The running process for this component, by pid file, then by socket owner."""
    for pid in (read_pid_file(pid_file), socket_owner(socket_path) if socket_path else None):
        if pid:
            info = proc_info(pid)
            if info and matches(info, binary):
                return info
    return None


def start(argv: Sequence[str], *, log: Path, pid_file: Path,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> ProcInfo:
    """Start ``argv`` detached (own session), output appended to ``log``, pid to ``pid_file``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        try:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=env, cwd=cwd, close_fds=True)
        except OSError as exc:
            raise ProcessError(f"cannot start {Path(argv[0]).name}", expected="an executable",
                               found=str(exc)) from exc
    pid_file.write_text(f"{proc.pid}\n")
    # /proc/<pid>/cmdline can still show the forking parent for a moment after exec
    info = poll(lambda: (i := proc_info(proc.pid)) is None or matches(i, argv[0]) and i, timeout=5.0,
                what=f"{Path(argv[0]).name} to exec", error=ProcessError, raise_on_timeout=False)
    info = info if isinstance(info, ProcInfo) else proc_info(proc.pid)
    if info is None:
        code = proc.poll()
        raise ProcessError(f"{Path(argv[0]).name} exited at once", expected="a running process",
                           found=f"exit code {code}; see {log}")
    # The child is reaped by whoever outlives us; detach the Popen object.
    proc.returncode = 0
    return info


def stop(info: ProcInfo, *, timeout: float = 15.0, pid_file: Path | None = None) -> None:
    """SIGTERM this exact process, wait for it (deadline), SIGKILL if it will not go."""
    current = proc_info(info.pid)
    if current is None or abs(current.started_at - info.started_at) > 1.0:
        if pid_file:
            pid_file.unlink(missing_ok=True)
        return  # already gone (or the pid now belongs to someone else)
    _signal(info.pid, signal.SIGTERM)
    _reap(info.pid)
    if not poll(lambda: proc_info(info.pid) is None or _reap(info.pid), timeout=timeout,
                raise_on_timeout=False):
        _signal(info.pid, signal.SIGKILL)
        poll(lambda: proc_info(info.pid) is None or _reap(info.pid), timeout=5.0,
             what=f"pid {info.pid} to exit after SIGKILL", error=ProcessError)
    if pid_file:
        pid_file.unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> bool:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False
