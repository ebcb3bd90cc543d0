"""The config writer (being replaced by the project's one atomic writer)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import ConfigError


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_atomic(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Replace the file at ``path`` with ``text`` atomically.

    Writes a temp file in the same directory, fsyncs it, gives it the original's
    mode and owner (or ``mode`` if given; a new file gets 0666 & ~umask), then
    ``os.replace``s it and fsyncs the directory. A symlink is followed: its
    target is replaced, the link stays.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "agent.conf")
    >>> write_atomic(p, "agent {}\\n", mode=0o600)
    >>> open(p).read(), oct(os.stat(p).st_mode & 0o777)
    ('agent {}\\n', '0o600')
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}", expected="a writable directory", found=str(exc),
                          remedy="run as a user who may write the SPIRE config directory") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        if st is not None and (st.st_uid != os.geteuid() or st.st_gid != os.getegid()):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError as exc:
                raise ConfigError(f"cannot keep the owner of {target}",
                                  expected=f"owner {st.st_uid}:{st.st_gid} kept", found=str(exc),
                                  remedy="run as root or as the file's owner") from exc
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
