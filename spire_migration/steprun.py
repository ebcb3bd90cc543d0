"""What migrate and rollback have in common: a journaled run of numbered steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .journal import Journal
from .node import Node
from .target import Target


@dataclass
class StepResult:
    """What one step did (or, planned, would do)."""

    step: str
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    planned: bool = False


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
