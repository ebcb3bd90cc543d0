"""The one way the suite writes a file: atomically, and never through a planted link.

The suite runs as root and writes into folders root does not always own (the
agent's data dir, a config dir when the agent user is not root). There a local
user can plant a symbolic link at a file's path, or at a temp name they can
guess, and wait for root to write through it. :func:`write_file` cannot be led:

- the destination folder is opened once and everything after goes through
  that descriptor (a folder swapped for a link halfway changes nothing);
- the temp file gets a random name, created with ``O_EXCL|O_NOFOLLOW`` (a
  planted name is never opened, a planted link never followed);
- owner and mode are set on the open descriptor (``fchown``/``fchmod``), never
  by path: the file's existing owner and mode are kept unless the caller says
  otherwise, a new file gets 0600;
- the file is fsynced, renamed over the destination and the folder fsynced,
  so a crash leaves the old file or the new one, never half of one.

A destination that is a symlink is refused, naming it (:func:`refuse_link`
checks that alone, for callers that must refuse before they change anything;
:func:`open_for_append` opens a log the same careful way),
and so is a destination folder that is a link someone else could have planted
(a link in a folder writable by others than root and us).

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "agent.conf")
>>> write_file(p, "agent {}\\n")
>>> open(p).read(), oct(os.stat(p).st_mode & 0o777)
('agent {}\\n', '0o600')
>>> os.chmod(p, 0o644); write_file(p, b"agent { x = 1 }\\n"); oct(os.stat(p).st_mode & 0o777)
'0o644'
>>> os.symlink(p, os.path.join(d, "link.conf"))
>>> write_file(os.path.join(d, "link.conf"), "x")
Traceback (most recent call last):
...
spire_migration.errors.FileError: refusing to write .../link.conf: it is a symbolic link
...
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from spire_migration.errors import FileError

NEW_FILE_MODE = 0o600
_TRUSTED = {0, os.geteuid()}


def refuse_link(path: str | os.PathLike[str]) -> None:
    """Raise :class:`FileError` when ``path`` is a symbolic link (a missing path is fine)."""
    path = Path(path)
    if path.is_symlink():
        raise FileError(f"refusing to write {path}: it is a symbolic link",
                        expected="a regular file (or none yet)", found=f"a link to {os.readlink(path)}",
                        remedy=f"find out who planted it; replace {path} with the real file")


def open_for_append(path: str | os.PathLike[str]) -> int:
    """A descriptor appending to ``path`` (a log; created 0600), never through a link or a hard link."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, NEW_FILE_MODE)
    except OSError as exc:
        refuse_link(path)
        raise FileError(f"cannot append to {path}", expected="a regular file the suite may write",
                        found=str(exc), remedy="check the path in the target description") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise FileError(f"refusing to append to {path}", expected="a regular file with one name",
                        found=f"file type {stat.S_IFMT(st.st_mode):o}, {st.st_nlink} links",
                        remedy=f"find out who made it; remove {path}")
    return fd


def write_file(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
               owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (see the module's docstring).

    ``mode`` and ``owner`` (uid, gid) override what the file has (a new file:
    0600, the caller's uid and gid). Missing parent folders are created 0700.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    dfd = _open_folder(path)
    try:
        st = _existing(dfd, path)
        if st is not None:
            owner = owner or (st.st_uid, st.st_gid)
            mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        tmp = _create_temp(dfd, path)
        try:
            _fill(dfd, tmp, path, raw, NEW_FILE_MODE if mode is None else mode, owner)
            os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.unlink(tmp, dir_fd=dfd)
            raise
        _fsync_folder(dfd)
    finally:
        os.close(dfd)


def _open_folder(path: Path) -> int:
    """A descriptor on ``path``'s folder; a link there only when nobody else could have planted it."""
    folder = path.parent
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    if folder.is_symlink():
        above = os.stat(folder.parent)
        link = os.lstat(folder)
        others_write = above.st_mode & 0o022
        sticky_ours = above.st_mode & stat.S_ISVTX and link.st_uid in _TRUSTED
        if above.st_uid not in _TRUSTED or (others_write and not sticky_ours):
            raise FileError(f"refusing to write {path}: its folder {folder} is a symbolic link "
                            f"that others may have planted",
                            expected=f"{folder} a real folder, or a link in a folder only root may write",
                            found=f"a link to {os.readlink(folder)} in {folder.parent} "
                                  f"(uid {above.st_uid}, mode {stat.S_IMODE(above.st_mode):04o})",
                            remedy=f"point the target description at the real folder, {os.path.realpath(folder)}")
    else:
        flags |= os.O_NOFOLLOW
    try:
        return os.open(folder, flags)
    except OSError as exc:
        raise FileError(f"cannot write {path}", expected=f"{folder} a folder the suite may write",
                        found=str(exc), remedy="check the path in the target description") from exc


def _existing(dfd: int, path: Path) -> os.stat_result | None:
    """The destination's lstat through the folder's descriptor; refuses a link or a non-file."""
    try:
        st = os.lstat(path.name, dir_fd=dfd)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        refuse_link(path)
        raise FileError(f"refusing to write {path}: it is a symbolic link")  # replaced since the check
    if not stat.S_ISREG(st.st_mode):
        raise FileError(f"refusing to write {path}: it is not a regular file", expected="a regular file",
                        found=f"file type {stat.S_IFMT(st.st_mode):o}", remedy=f"remove or move {path}")
    return st


def _create_temp(dfd: int, path: Path) -> str:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(16):
        name = f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            os.close(os.open(name, flags, NEW_FILE_MODE, dir_fd=dfd))
            return name
        except FileExistsError:
            continue
        except OSError as exc:
            raise FileError(f"cannot write {path}", expected=f"{path.parent} writable by the suite",
                            found=str(exc), remedy="run as a user who may write that folder") from exc
    raise FileError(f"cannot write {path}", expected="a free temp name", found="16 names taken",
                    remedy=f"clean up {path.parent}")


def _fill(dfd: int, tmp: str, path: Path, raw: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Owner, mode and content of the temp file, all on its descriptor, then fsync."""
    fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, *owner)
            except PermissionError as exc:
                raise FileError(f"cannot keep the owner of {path}", expected=f"owner {owner[0]}:{owner[1]}",
                                found=str(exc), remedy="run as root or as the file's owner") from exc
        os.fchmod(fd, mode)   # after fchown, which clears set-id bits
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(dfd: int) -> None:
    try:
        os.fsync(dfd)
    except OSError as exc:  # some file systems cannot fsync a folder; the rename is done anyway
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
