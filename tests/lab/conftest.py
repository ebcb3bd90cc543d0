"""Lab tests: the suite run as a user runs it, against a real swtpm lab.

``lab`` gives each test module its own lab root (short, under the lab's
private folder /run/spire-lab, so its target files pass the suite's ownership
check and unix socket paths stay short); ``Lab`` brings a lab up and always takes it
down; ``run_suite`` runs ``python -m pytest`` in a subprocess and returns what
it printed and its exit code, with the summary JSON it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from lab import core
from lab.layout import private_base
from spire_migration.config.target import Target

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class SuiteRun:
    code: int
    output: str
    summary: dict

    def status(self, tag: str) -> str:
        """The status of the scenario carrying ``tag`` (e.g. 'guide_step_4')."""
        found = [r["status"] for r in self.summary.get("results", []) if tag in r["tags"]]
        assert found, f"no scenario tagged {tag} in the run:\n{self.output[-3000:]}"
        return found[0]


class Lab:
    """One lab under its own root; call up() again to re-provision it afresh."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.target_path: Path | None = None

    def up(self, agents: int = 1) -> Path:
        self.target_path = core.up(self.root, agents=agents, log=lambda m: None)
        return self.target_path

    def down(self) -> None:
        """Stop everything by pid and remove the root (failures keep their log tails in messages)."""
        core.down(self.root, purge=True, log=lambda m: None)

    @property
    def target(self) -> Target:
        return Target.load(self.target_path)

    def run_suite(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> SuiteRun:
        summary = Path(tempfile.mkstemp(prefix="summary-", suffix=".json", dir=self.root)[1])
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",  # '=': config stays the checkout's
               f"--target={self.target_path}", f"--summary={summary}", *args]
        proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        text = summary.read_text() if summary.exists() and summary.stat().st_size else "{}"
        summary.unlink(missing_ok=True)
        return SuiteRun(proc.returncode, proc.stdout + proc.stderr, json.loads(text))


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A Phase 3 lab for this module, always taken down afterwards."""
    root = Path(tempfile.mkdtemp(prefix="lab-", dir=private_base()))
    the_lab = Lab(root)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def make_lab() -> Iterator:
    """Make extra labs inside a test; every one is taken down afterwards."""
    made: list[Lab] = []

    def _make() -> Lab:
        made.append(Lab(Path(tempfile.mkdtemp(prefix="lab-", dir=private_base()))))
        return made[-1]
    yield _make
    for one in made:
        one.down()
