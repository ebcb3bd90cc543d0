"""Crash points for the crash-and-resume tests.

``checkpoint(name)`` does nothing unless ``SPIRE_MIGRATION_KILL_AT`` names it:
then the process SIGKILLs itself right there, as an operator's kill -9 or a
power cut would, so the lab tests can prove that a re-run resumes from the
journal and loses nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "SPIRE_MIGRATION_KILL_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


FAIL_AT = "SPIRE_MIGRATION_FAIL_AT"


def fail_point(name: str) -> None:
    """Raise a MigrationError at ``name`` when ``SPIRE_MIGRATION_FAIL_AT`` names it: a
    failure the run survives (unlike ``checkpoint``), for the tests of what a failed
    step leaves behind."""
    if os.environ.get(FAIL_AT) == name:
        from spire_migration.errors import MigrationError
        raise MigrationError(f"fault injected at {name}", expected="no fault", found=f"{FAIL_AT}={name}",
                             remedy=f"unset {FAIL_AT}")
