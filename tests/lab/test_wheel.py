"""Issue 11.3 and 11.4: the suite as a wheel, run from ``/`` through its entry point, with live progress.

The wheel is built from this checkout and installed into a new virtual
environment (pip's cache makes that take about 1-2 minutes); then
``spire-migration validate`` and ``spire-migration migrate`` run from ``/``
against a Phase 3 lab: no checkout, no lab code, the project's config pinned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    """A new virtual environment with only the built wheel (and its dependencies) installed."""
    with tempfile.TemporaryDirectory(prefix="spire-wheel-") as tmp:
        t0 = time.monotonic()
        dist, env = Path(tmp) / "dist", Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "pip", "wheel", str(PROJECT), "--no-deps", "-q", "-w", str(dist)],
                       check=True, timeout=300, capture_output=True)
        wheel = next(dist.glob("spire_tpm_migration-*.whl"))
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
        subprocess.run([env / "bin" / "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                       check=True, timeout=600, capture_output=True)
        print(f"wheel built and installed in {time.monotonic() - t0:.1f} s")
        yield env


def _run(env: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([env / "bin" / "spire-migration", *args], cwd="/", capture_output=True, text=True,
                          timeout=600)


def test_the_wheel_carries_the_suite_and_not_the_lab(venv: Path) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "steps" / "test_guide.py").is_file() and (site / "fixtures" / "suite.py").is_file()
    assert (site / "features" / "02_migration.feature").is_file()
    assert (site / "spire_migration" / "suite.ini").is_file()
    assert not (site / "lab").exists() and not (site / "workload").exists()


def test_validate_and_migrate_from_root_with_live_progress(venv: Path, lab) -> None:
    report = lab.root / "validate.md"
    run = _run(venv, "validate", "--target", str(lab.target_path), "--report", str(report), "--progress", "json")
    events = [json.loads(line) for line in run.stdout.splitlines()]  # stdout holds JSON lines only
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "configfile: spire_migration/suite.ini" in run.stderr  # the installed one, pinned
    assert "Warning" not in run.stderr
    assert {e["event"] for e in events} >= {"scenario_start", "step_start", "step_end", "scenario_end"}
    assert events[-1] == {**events[-1], "event": "reports", "paths": {"report": str(report)}}
    assert report.is_file()

    migrate = _run(venv, "migrate", "--target", str(lab.target_path))
    out = migrate.stdout + migrate.stderr
    assert migrate.returncode == 0, out[-4000:]
    assert "step 6: waiting for spire-server to become healthy, " in out and " s / 60 s" in out
    assert "step 6:   When " in out and "step 6: passed in " in out
    assert "spire-migration: summary " in out
