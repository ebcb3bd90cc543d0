"""Secrets as values that never print themselves, and handed to a process by file only.

A :class:`Secret` shows ``<redacted:fingerprint>`` in ``repr``, ``str`` and
f-strings (so a traceback, an assertion message or a log line carries no
secret by accident); :meth:`Secret.reveal` is the one place its value comes
out. :func:`secret_file` gives a process a secret without a command line or an
environment variable: a 0600 file, owned by the suite's user, in a fresh 0700
folder, removed when the block ends.

>>> s = Secret("0d1f5c2e-aaaa-bbbb-cccc-1234567890ab")
>>> s
Secret(<redacted:60b0bd94>)
>>> f"token {s}"
'token <redacted:60b0bd94>'
>>> s.reveal()[:8]
'0d1f5c2e'
"""

from __future__ import annotations

import hmac
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spire_migration.redact import fingerprint, register_secret


class Secret:
    """A secret string: redacted wherever it is shown, compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = str(value)
        register_secret(self._value)

    def reveal(self) -> str:
        """The secret itself: only to hand it to SPIRE (a file, stdin), never to print it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self})"

    def __str__(self) -> str:
        return f"<redacted:{fingerprint(self._value)}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):
        raise TypeError("a Secret is not pickled")


def _private_base() -> str | None:
    """``/run`` (memory, root's own) when we may write there; else the system's temp folder."""
    try:
        st = os.stat("/run")
    except OSError:
        return None
    if st.st_uid == os.geteuid() == 0 and not st.st_mode & 0o022:
        return "/run"
    return None


@contextmanager
def secret_file(secret: Secret, name: str = "secret") -> Iterator[Path]:
    """A file holding ``secret``: mode 0600 in a new 0700 folder, both removed when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix="spire-migration-", dir=_private_base()))  # 0700, O_EXCL
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret.reveal() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
