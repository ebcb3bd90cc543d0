"""A process's start time is exact enough to compare with a config file's mtime.

/proc/stat's ``btime`` is whole seconds (up to 1 s early), so a server restarted right after its
config was written looked "started before its config was last written" (post_check_1 failed
after finalize in the README's main command).
"""

from __future__ import annotations

import subprocess
import sys
import time

from spire_migration import process


def test_start_time_is_within_a_tenth_of_a_second() -> None:
    before = time.time()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    after = time.time()
    try:
        info = process.proc_info(proc.pid)
        assert info is not None
        assert before - 0.1 <= info.started_at <= after + 0.1, (before, info.started_at, after)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
