"""The run's timeline: when each scenario and step started, how long it took, and the waits
inside them (from :func:`spire_migration.retry.poll`, when it reports its waits).

Kept on the run (``run.facts["_timeline"]``, private: not in the summary JSON) so every report
writer takes the same :class:`~spire_migration.records.report.Run`. Times are seconds since the epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

_KEY = "_timeline"


@dataclass
class Span:
    """One row of the timeline: a scenario, a step of it, or a wait inside a step."""

    kind: str                   # "scenario", "step" or "wait"
    name: str
    nodeid: str
    start: float
    duration: float | None = None   # None while it runs
    status: str = "running"
    host: str = ""

    def end(self, status: str, at: float | None = None) -> None:
        self.duration = max(0.0, (time.time() if at is None else at) - self.start)
        self.status = status


@dataclass
class Timeline:
    spans: list[Span] = field(default_factory=list)
    _open_step: Span | None = None
    _unsubscribe: Callable[[], None] | None = None

    def scenario(self, nodeid: str, name: str, start: float, stop: float, status: str, host: str = "") -> None:
        """Record (or extend) the scenario *nodeid*: from its setup's start to its teardown's end."""
        if self._open_step is not None and self._open_step.nodeid == nodeid:
            self.step_ended("failed" if status == "failed" else "skipped")  # a step that skipped or broke off
        for span in self.spans:
            if span.kind == "scenario" and span.nodeid == nodeid:
                span.end(status, at=stop)
                return
        span = Span("scenario", name, nodeid, start, host=host)
        span.end(status, at=stop)
        # before the steps recorded during its call phase
        at = next((i for i, s in enumerate(self.spans) if s.nodeid == nodeid), len(self.spans))
        self.spans.insert(at, span)

    def step_started(self, nodeid: str, name: str) -> None:
        self._open_step = Span("step", name, nodeid, time.time())
        self.spans.append(self._open_step)

    def step_ended(self, status: str) -> None:
        if self._open_step is not None:
            self._open_step.end(status)
            self._open_step = None

    def on_wait(self, wait: Any) -> None:
        """A :class:`spire_migration.retry.Wait`: the finished ones become wait rows of the open step."""
        step = self._open_step
        if step is None or getattr(wait, "state", "") == "waiting":
            return
        now = time.time()
        span = Span("wait", f"waiting for {wait.what}", step.nodeid, now - wait.elapsed)
        span.end("timed out" if wait.state == "timeout" else "done", at=now)
        self.spans.append(span)

    def watch_waits(self) -> None:
        """Subscribe to the poll helper's waits, when this version of it reports them."""
        from spire_migration import retry

        observe = getattr(retry, "observe", None)
        if observe is not None and self._unsubscribe is None:
            self._unsubscribe = observe(self.on_wait)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def timeline_of(run: Any) -> Timeline:
    """The timeline kept on *run* (a :class:`~spire_migration.records.report.Run`), made on first use."""
    tl = run.facts.get(_KEY)
    if not isinstance(tl, Timeline):
        tl = run.facts[_KEY] = Timeline()
        tl.watch_waits()
    return tl
