"""The locks: one per node (its run), one for the server every node shares.

Both are ``flock`` locks on a file under the journal dir, so a run killed with
``kill -9`` never leaves a stale lock behind: the kernel drops it with the
process. The lock file is opened with ``O_NOFOLLOW`` (a planted link is
refused, naming it) and never written or truncated: the holder's pid comes
from ``/proc/locks``.

The server lock is held by whatever edits or restarts the server (migration
steps 4-6, rollback steps 1-3, finalize): in a gradual migration every node
shares server.conf and the server. It is re-entrant within a process, and a
second process waits for it (with a deadline).

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> with server_lock(d, timeout=0):
...     with server_lock(d, timeout=0):   # re-entrant in one process
...         (d / "server.lock").read_text()
''
"""

from __future__ import annotations

import fcntl
import functools
import os
import stat
from pathlib import Path
from typing import Any, Callable, TypeVar

from spire_migration.errors import JournalError
from spire_migration.retry import poll

#: How long a run waits for another node's run to finish its server steps.
SERVER_LOCK_WAIT = 300.0
F = TypeVar("F", bound=Callable[..., Any])


class FileLock:
    """An exclusive ``flock`` on ``path``, re-entrant for this object."""

    def __init__(self, path: Path, what: str, remedy: str, timeout: float = 0.0) -> None:
        self.path = Path(path)
        self.what = what
        self.remedy = remedy
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> "FileLock":
        if self._depth == 0:
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _acquire(self) -> int:
        fd = _open_lock_file(self.path)
        try:
            if not poll(lambda: _try_flock(fd), timeout=self.timeout, interval=0.05,
                        what=self.what, raise_on_timeout=False):
                raise JournalError(f"another run holds {self.what}", expected="no run in progress",
                                   found=f"{self.path} held by pid {holder(fd)}"
                                         + (f" for more than {self.timeout:g} s" if self.timeout else ""),
                                   remedy=self.remedy)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _open_lock_file(path: Path) -> int:
    """Open (create 0600) the lock file read-only, refusing a link or anything not a regular file."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        found = f"a link to {os.readlink(path)}" if path.is_symlink() else str(exc)
        raise JournalError(f"cannot open the lock {path}", expected="a regular file (or none yet)",
                           found=found, remedy=f"find out who planted it; remove {path}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JournalError(f"the lock {path} is not a regular file", expected="a regular file",
                           found="another file type", remedy=f"remove {path}")
    return fd


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(fd: int) -> str:
    """The pid holding a flock on ``fd``'s file, from ``/proc/locks`` ("unknown" if not listed)."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        fields = line.split()
        if "->" not in fields and len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == ident:
            return fields[4]
    return "unknown"


_SERVER_LOCKS: dict[Path, FileLock] = {}


def server_lock(journal_dir: Path, timeout: float | None = None) -> FileLock:
    """The lock on the server shared by every node: ``<journal dir>/server.lock``
    (a second process waits ``timeout`` s for it, :data:`SERVER_LOCK_WAIT` by default)."""
    path = Path(journal_dir).absolute() / "server.lock"
    lock = _SERVER_LOCKS.get(path)
    if lock is None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = _SERVER_LOCKS[path] = FileLock(
            path, "the server lock (server.conf and the server's restart)",
            "wait for the other node's run to finish its server steps, then run again")
    lock.timeout = SERVER_LOCK_WAIT if timeout is None else timeout
    return lock


def holds_server_lock(step: F) -> F:
    """Decorate a step of a :class:`~spire_migration.procedures.steprun.JournaledRun` that edits or restarts
    the server: a real run (not a plan) performs it holding the server lock."""
    @functools.wraps(step)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.plan:
            return step(self, *args, **kwargs)
        with server_lock(self.t.journal.dir):
            return step(self, *args, **kwargs)
    return locked  # type: ignore[return-value]
