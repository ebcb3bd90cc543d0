"""A process's start time is exact enough to compare with a file's mtime (services.started_before)."""

import subprocess
import sys
import time

from spire_migration.node import process


def test_start_time_is_not_before_the_spawn():
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        info = process.proc_info(child.pid)
        assert info is not None
        # /proc/stat's btime is whole seconds: a start time built on it can be up to 1 s early,
        # and a server started right after its config was written then looks "started before" it
        assert before - 0.05 <= info.started_at <= time.time() + 0.05, (before, info.started_at)
    finally:
        child.kill()
        child.wait()
