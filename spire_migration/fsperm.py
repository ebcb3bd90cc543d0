"""Ownership and mode rules for the files the suite trusts as root.

A file another user can change (or replace, through any folder above it)
decides what root does next: the target description names every path the
suite writes, and a pytest config file beside it would run code. Trusted
means: owned by root or by the user running the suite, and not writable by
group or others, for the path itself and every folder above it. The sticky
bit does not make a folder trusted (anyone can still add a file to /tmp, such
as a /tmp/pytest.ini that pytest would read).

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> os.chmod(d, 0o777)
>>> check_private_dir(d)
Traceback (most recent call last):
...
spire_migration.errors.TargetError: ... has mode 0777
  expected: a folder owned by root (uid 0), mode 0700 (no group or other bits)
  found:    ... owner root (uid 0), mode 0777
  do:       chmod 0700 ...
>>> os.rmdir(d)
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from spire_migration.errors import MigrationError, TargetError


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def trusted_owners() -> tuple[int, ...]:
    """Root, and the user running the suite when that is not root."""
    return tuple(sorted({0, os.geteuid()}))


def _describe(path: Path, st: os.stat_result) -> str:
    return f"{path}: owner {_owner(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def check_trusted_path(path: str | Path) -> None:
    """Refuse ``path`` unless it and every folder above it are trusted (see the module).

    Raises :class:`TargetError` naming the first offending path, its owner and mode.
    """
    path = Path(os.path.abspath(path))
    owners = trusted_owners()
    allowed = " or ".join(_owner(u) for u in owners)
    for p in (path, *path.parents):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):  # follow, then check where it points as well
            check_trusted_path(p.resolve())
            continue
        if st.st_uid not in owners:
            raise TargetError(f"{p} is owned by {_owner(st.st_uid)}", expected=f"owned by {allowed}",
                              found=_describe(p, st), remedy=f"chown root {p} (or move the file)")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise TargetError(f"{p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
                              expected="not writable by group or others, every folder above included",
                              found=_describe(p, st),
                              remedy=f"chmod go-w {p}, or keep the file in a folder only root can write "
                                     "(e.g. /etc/spire-migration)")


def check_private_dir(path: str | Path, error: type[MigrationError] = TargetError) -> None:
    """Refuse an existing folder that is not this user's own, mode 0700 (no group/other bits).

    For the journal: a folder someone else owns, or can enter, is not ours to keep.
    A missing folder passes (the caller creates it 0700). Raises ``error``.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    uid = os.geteuid()
    expected = f"a folder owned by {_owner(uid)}, mode 0700 (no group or other bits)"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise error(f"{path} is not a folder", expected=expected,
                          found=f"{path}: {'a symlink' if stat.S_ISLNK(st.st_mode) else 'not a folder'}",
                          remedy=f"remove {path} or choose another [journal] dir")
    if st.st_uid != uid:
        raise error(f"{path} is owned by {_owner(st.st_uid)}", expected=expected,
                          found=_describe(path, st),
                          remedy=f"check who made {path}; then chown {uid} {path} or remove it")
    if st.st_mode & 0o077:
        raise error(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}", expected=expected,
                          found=_describe(path, st), remedy=f"chmod 0700 {path}")
