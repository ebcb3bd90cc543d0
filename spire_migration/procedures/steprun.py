"""What migrate and rollback have in common: a journaled run of numbered steps."""

from __future__ import annotations

from typing import Any, Callable

from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.redact import redact
from spire_migration.config.target import Target
from spire_migration.verdict import StepResult

__all__ = ["JournaledRun", "StepResult"]


class JournaledRun:
    """A run of steps on one node, recorded in its journal; ``plan=True`` changes nothing."""

    def __init__(self, target: Target, journal: Journal, plan: bool = False,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.t = target
        self.journal = journal
        self.plan = plan
        self.log = log

    @property
    def node(self) -> Node:
        """A fresh view of the node (nothing cached from before a change)."""
        return Node(self.t)

    def finish(self, step: str, changes: list[str], notes: list[str] | None = None,
               **evidence: Any) -> StepResult:
        """Record a finished step in the journal (not when planning) and return its result.

        Changes and notes are redacted; keyword arguments are the step's evidence.
        """
        changes = [redact(c) for c in changes]
        if not self.plan:
            self.journal.complete(step, changes)
        for c in changes:
            self.log(f"{step}: {'would ' if self.plan else ''}{c}")
        return StepResult(step, changes, [redact(n) for n in notes or []], self.plan, dict(evidence))
