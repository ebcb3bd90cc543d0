"""Run order defined once (issue 10.5) and live progress (issue 11.4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.ordering import FEATURES, GUIDE_ORDER
from fixtures.progress import label_of, text_line

PROJECT = Path(__file__).resolve().parents[2]


def test_the_run_order_names_every_feature_once() -> None:
    assert sorted(GUIDE_ORDER) == sorted(p.name for p in FEATURES.glob("*.feature"))


def test_scenarios_are_collected_in_the_guides_order() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "steps", "--collect-only", "-q"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)
    names = [line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line]
    first = {}
    for pos, name in enumerate(names):
        for marker in ("pre_migration", "step_1_", "rollback_step_1", "dual_attestation", "issue_1",
                       "spire_server_running_with_tpm", "restrict_tpm_access", "join_token_attestor_is_retired"):
            if marker in name:
                first.setdefault(marker, pos)
    positions = [first.get(m, -1) for m in ("step_1_", "rollback_step_1", "dual_attestation", "issue_1",
                                             "spire_server_running_with_tpm", "restrict_tpm_access",
                                             "join_token_attestor_is_retired")]
    assert -1 not in positions and positions == sorted(positions), proc.stdout[-2000:]


FEATURE = """\
Feature: progress
  @guide_step_6
  Scenario: Start the servers
    Given nothing
    When the fake server comes up
    Then it is healthy

  @guide_step_7
  Scenario: Verify
    When a check fails
"""

STEPS = '''\
import itertools
from pytest_bdd import given, scenarios, then, when
from spire_migration.retry import poll

scenarios("progress.feature")

@given("nothing")
def _nothing():
    pass

@when("the fake server comes up")
def _up():
    answers = itertools.chain([None, None, None], itertools.repeat(True))
    poll(lambda: next(answers), timeout=30, what="the fake server to report healthy", interval=0.01)

@then("it is healthy")
def _healthy():
    pass

@when("a check fails")
def _fails():
    assert False, "no"
'''


def _events(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "progress.feature").write_text(FEATURE)
    (tmp_path / "test_progress.py").write_text(STEPS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "fixtures.progress", "-p", "no:cacheprovider",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


def test_json_progress_is_one_object_per_event(tmp_path: Path) -> None:
    proc = _events(tmp_path, "--progress", "json", "--junitxml", str(tmp_path / "j.xml"))
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout holds JSON lines only
    kinds = [(e["event"], e.get("label"), e.get("state") or e.get("outcome")) for e in events]
    assert kinds == [
        ("scenario_start", "step 6", None),
        ("step_start", "step 6", None), ("step_end", "step 6", "passed"),
        ("step_start", "step 6", None),
        ("wait", "step 6", "waiting"), ("wait", "step 6", "done"),
        ("step_end", "step 6", "passed"),
        ("step_start", "step 6", None), ("step_end", "step 6", "passed"),
        ("scenario_end", "step 6", "passed"),
        ("scenario_start", "step 7", None),
        ("step_start", "step 7", None), ("step_end", "step 7", "failed"),
        ("scenario_end", "step 7", "failed"),
        ("reports", None, None),
    ], proc.stdout
    wait = events[4]
    assert wait["what"] == "the fake server to report healthy" and wait["timeout"] == 30
    assert wait["step"] == "When the fake server comes up" and 0 <= wait["elapsed"] < 30
    assert events[-1]["paths"] == {"junitxml": str(tmp_path / "j.xml")}
    assert "1 failed, 1 passed" in proc.stderr  # pytest's own report moved to stderr


def test_text_progress_shows_the_wait_and_each_outcome(tmp_path: Path) -> None:
    out = _events(tmp_path).stdout
    assert "step 6: Start the servers" in out
    assert "step 6: waiting for the fake server to report healthy, 0." in out and " s / 30 s" in out
    assert "step 6:   When the fake server comes up: passed in" in out
    assert "step 7:   When a check fails: failed in" in out and "step 7: failed in" in out


def test_quiet_text_progress_prints_nothing(tmp_path: Path) -> None:
    assert "waiting for" not in _events(tmp_path, "-q").stdout


def test_labels_and_lines() -> None:
    assert label_of(["migrate", "guide_step_6"], "x") == "step 6"
    assert label_of(["rollback_step_2"], "x") == "rollback step 2"
    assert label_of([], "Some scenario") == "Some scenario"
    line = text_line({"event": "wait", "label": "step 6", "what": "the server to report healthy",
                      "state": "waiting", "elapsed": 1.44, "timeout": 60.0})
    assert line == "step 6: waiting for the server to report healthy, 1.4 s / 60 s"
