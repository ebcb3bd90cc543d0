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
