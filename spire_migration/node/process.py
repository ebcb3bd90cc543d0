"""Start and stop exactly the processes we mean: by pid, never by name.

A pid file alone can lie (the process died and the pid was reused, or a local
user wrote any pid there), and argv[0] is whatever a process chose
(``exec -a spire-agent sleep``). So a pid only counts when the kernel says the
process runs the expected binary (``/proc/<pid>/exe`` against the binary's
real path) as an expected user (root or the configured SPIRE user). A socket's
owner is the fallback when there is no pid file, and only when the socket's
folder is owned by such a user and writable by no one else. Signals go through
a pidfd (the process itself, not a pid number that could be reused) where the
kernel has them, else right after a start-time check. Daemons start with a
minimal environment: nothing of the suite's (crash points, tokens) leaks in.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from spire_migration.errors import ProcessError
from spire_migration.fileio import open_for_append, refuse_link, write_file
from spire_migration.redact import redact_argv
from spire_migration.retry import poll

_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: What a daemon inherits from the suite's environment (everything else is dropped).
_DAEMON_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ProcInfo:
    """A live process as /proc shows it."""

    pid: int
    argv: tuple[str, ...]
    started_at: float  # seconds since the epoch
    uid: int = -1      # real uid (-1: unknown)

    @property
    def command(self) -> str:
        return " ".join(redact_argv(self.argv))

    def __repr__(self) -> str:
        return f"ProcInfo(pid={self.pid}, argv={redact_argv(self.argv)!r}, started_at={self.started_at}, uid={self.uid})"

    __str__ = __repr__


@functools.cache
def _boot_time() -> float:
    """When the kernel booted, to the microsecond (``btime`` in /proc/stat is whole seconds: a
    process started just after a config was written looked up to 1 s older than the config).
    Read once, so one process's start time is the same number every time it is read."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1


def proc_info(pid: int) -> ProcInfo | None:
    """The process with this pid, or None when it is gone (zombies count as gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
        uid = _uid(pid)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    started = _boot_time() + int(fields[19]) / _CLK_TCK
    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return ProcInfo(pid, argv, started, uid)


def resolve_binary(binary: str | Path) -> Path | None:
    """The real path of ``binary`` (a path, or a name looked up on PATH); None when absent."""
    found = str(binary) if os.sep in str(binary) else shutil.which(str(binary))
    return Path(os.path.realpath(found)) if found and os.path.exists(found) else None


def allowed_uids(user: str | int | None = None) -> set[int]:
    """Root, the suite's own user, and the configured SPIRE user (a name or a uid)."""
    uids = {0, os.geteuid()}
    if isinstance(user, int) or (isinstance(user, str) and user.isdigit()):
        uids.add(int(user))
    elif user:
        try:
            uids.add(pwd.getpwnam(user).pw_uid)
        except KeyError:
            pass
    return uids


def matches(info: ProcInfo, binary: str | Path, uids: Iterable[int] | None = None) -> bool:
    """True when the kernel says the process runs ``binary`` (its real path) as one of ``uids``.

    argv[0] is never trusted: a process names itself. A bare name that is not
    on PATH is compared with the name of the process's executable.
    """
    if info.uid not in (set(uids) if uids is not None else allowed_uids()):
        return False
    try:
        exe = Path(os.readlink(f"/proc/{info.pid}/exe").removesuffix(" (deleted)"))
    except OSError:
        return False
    want = resolve_binary(binary)
    if want is None and os.sep not in str(binary):   # a bare name off PATH: the kernel's exe name
        return exe.name == str(binary)
    return exe == want


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def trusted_folder(path: Path, uids: Iterable[int]) -> bool:
    """True when no one but ``uids`` can have put anything in folder ``path``.

    The folder and every folder above it are owned by one of ``uids`` (or
    root); the folder itself is writable by no group or other, and a folder
    above it only when sticky (``/tmp``), where no one can rename what is ours.
    """
    owners = set(uids) | {0}
    current = Path(os.path.abspath(path))
    for i, folder in enumerate([current, *current.parents]):
        try:
            st = os.stat(folder)
        except OSError:
            return False
        if st.st_uid not in owners or not stat.S_ISDIR(st.st_mode):
            return False
        if st.st_mode & 0o022 and (i == 0 or not st.st_mode & stat.S_ISVTX):
            return False
    return True


def socket_owner(socket_path: Path, uids: Iterable[int] | None = None) -> int | None:
    """The pid of the process listening on a unix socket, from /proc/net/unix.

    Only when the socket's folder is trusted (:func:`trusted_folder`): in a
    folder others can write, anyone could have bound the socket.
    """
    if not trusted_folder(Path(socket_path).parent, uids if uids is not None else allowed_uids()):
        return None
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


def find(binary: str | Path, pid_file: Path, socket_path: Path | None = None,
         user: str | int | None = None) -> ProcInfo | None:
    """The running process for this component, by pid file, then by socket owner.

    It counts only when it runs ``binary`` as root or ``user`` (see :func:`matches`).
    """
    uids = allowed_uids(user)
    for pid in (read_pid_file(pid_file), socket_owner(socket_path, uids) if socket_path else None):
        if pid:
            info = proc_info(pid)
            if info and matches(info, binary, uids):
                return info
    return None


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a daemon: PATH, HOME, LANG (and ``extra``), nothing else of ours."""
    env = {k: os.environ[k] for k in _DAEMON_ENV if k in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(extra or {})
    return env


def start(argv: Sequence[str], *, log: Path, pid_file: Path,
          env: Mapping[str, str] | None = None, cwd: Path | None = None,
          user: str | None = None) -> ProcInfo:
    """Start ``argv`` detached (own session), output appended to ``log``, pid to ``pid_file``.

    The process gets :func:`daemon_env` plus ``env``: never the suite's whole environment.
    With ``user`` it runs as that user (a root caller only).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(pid_file)  # before anything starts
    with os.fdopen(open_for_append(log), "ab", buffering=0) as out:
        try:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=daemon_env(env), cwd=cwd, close_fds=True, user=user)
        except OSError as exc:
            raise ProcessError(f"cannot start {Path(argv[0]).name}", expected="an executable",
                               found=str(exc)) from exc
    write_file(pid_file, f"{proc.pid}\n")
    # /proc/<pid> shows the forking parent (our exe, our or no cmdline) until the exec
    uids = allowed_uids(user)
    info = poll(lambda: (i := proc_info(proc.pid)) is None or i.argv == tuple(argv) and matches(i, argv[0], uids) and i,
                timeout=5.0,
                what=f"{Path(argv[0]).name} to exec", error=ProcessError, raise_on_timeout=False)
    info = info if isinstance(info, ProcInfo) else proc_info(proc.pid)
    if info is None:
        code = proc.poll()
        raise ProcessError(f"{Path(argv[0]).name} exited at once", expected="a running process",
                           found=f"exit code {code}; see {log}")
    # The child is reaped by whoever outlives us; detach the Popen object.
    proc.returncode = 0
    return info


def stop(info: ProcInfo, *, timeout: float = 15.0, pid_file: Path | None = None,
         sig: int = signal.SIGTERM) -> None:
    """Signal this exact process (``sig``, SIGTERM by default), wait for it (deadline),
    SIGKILL if it will not go."""
    with _Handle(info) as handle:
        if handle.gone:
            if pid_file:
                pid_file.unlink(missing_ok=True)
            return  # already gone (or the pid now belongs to someone else)
        handle.signal(sig)
        _reap(info.pid)
        if not poll(lambda: handle.exited() or _reap(info.pid), timeout=timeout, raise_on_timeout=False,
                    what=f"{Path(info.argv[0]).name if info.argv else 'pid'} {info.pid} to exit"):
            handle.signal(signal.SIGKILL)
            poll(lambda: handle.exited() or _reap(info.pid), timeout=5.0,
                 what=f"pid {info.pid} to exit after SIGKILL", error=ProcessError)
    if pid_file:
        pid_file.unlink(missing_ok=True)


def _same(info: ProcInfo) -> bool:
    current = proc_info(info.pid)
    return current is not None and abs(current.started_at - info.started_at) <= 1.0


class _Handle:
    """This very process: a pidfd opened, then checked to be ``info`` (start time), so a signal
    can never reach a process that took over the pid. Without pidfds: a start-time check per signal."""

    def __init__(self, info: ProcInfo) -> None:
        self.info = info
        self.fd: int | None = None
        self.gone = False

    def __enter__(self) -> "_Handle":
        if hasattr(os, "pidfd_open"):
            try:
                self.fd = os.pidfd_open(self.info.pid)
            except ProcessLookupError:
                self.gone = True
                return self
            except OSError:   # kernel without pidfd
                self.fd = None
        self.gone = self.gone or not _same(self.info)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def signal(self, sig: int) -> None:
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif _same(self.info):
                os.kill(self.info.pid, sig)
        except ProcessLookupError:
            pass

    def exited(self) -> bool:
        if self.fd is not None:
            try:
                signal.pidfd_send_signal(self.fd, 0)
            except ProcessLookupError:
                return True
            return proc_info(self.info.pid) is None   # a zombie counts as gone
        return not _same(self.info)


def _reap(pid: int) -> bool:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False
