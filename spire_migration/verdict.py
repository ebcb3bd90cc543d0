"""The check kernel: what a check concludes and what a step did, with the evidence of both.

Every checklist (pre, post, hardening, audit) returns a :class:`CheckResult`
built with :func:`check`; a check that may meet an unreadable state is wrapped
in :func:`guarded`, which turns the project's errors into a failed result that
names them. Migration, rollback and finalize steps return a :class:`StepResult`
that carries its evidence (diffs, agent IDs before and after, entry counts,
fingerprints) and the checks that proved it, for the reports.

Nothing here prints a secret: ``found`` is redacted when built, and ``repr``
redacts the evidence.

>>> r = check("agent attested", False, "a TPM agent ID", "agent ID spiffe://d/spire/agent/join_token/abcdef12",
...           remedy="re-attest", agent_id="spiffe://d/spire/agent/join_token/abcdef12")
>>> r.ok, r.found
(False, 'agent ID spiffe://d/spire/agent/join_token/<redacted:33004df5>')
>>> "abcdef12" in repr(r)
False
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from spire_migration.errors import MigrationError
from spire_migration.redact import redact, redact_obj

F = TypeVar("F", bound=Callable[..., "CheckResult"])


@dataclass(repr=False)
class CheckResult:
    """The outcome of one check: expected, found, the evidence read, the remedy."""

    title: str
    ok: bool
    expected: str
    found: str
    evidence: dict[str, Any] = field(default_factory=dict)
    remedy: str = ""
    #: A warning is a pass that the reports show with its text.
    warnings: list[str] = field(default_factory=list)

    def warn(self, *texts: str) -> "CheckResult":
        """Add warnings (a pass the reports show with its text); returns the result."""
        self.warnings.extend(texts)
        return self

    def message(self) -> str:
        text = f"{self.title}\n  expected: {self.expected}\n  found:    {self.found}"
        for w in self.warnings:
            text += f"\n  warning:  {w}"
        if self.remedy and not self.ok:
            text += f"\n  do:       {self.remedy}"
        return redact(text)

    def __repr__(self) -> str:
        return redact(f"CheckResult(title={self.title!r}, ok={self.ok!r}, expected={self.expected!r}, "
                      f"found={self.found!r}, evidence={redact_obj(self.evidence)!r}, remedy={self.remedy!r}, "
                      f"warnings={self.warnings!r})")


def check(title: str, ok: bool, expected: str, found: str, remedy: str = "",
          warnings: list[str] | None = None, **evidence: Any) -> CheckResult:
    """A :class:`CheckResult`, its ``found`` redacted; keyword arguments are the evidence."""
    return CheckResult(title, bool(ok), expected, redact(found), dict(evidence), remedy, list(warnings or []))


def failed(title: str, exc: MigrationError) -> CheckResult:
    """The failed result of a check that met a project error while reading."""
    return CheckResult(title, False, exc.expected or "a readable state", redact(exc.found or exc.message),
                       {"error": redact(exc.message)}, exc.remedy or "")


def guarded(fn: F) -> F:
    """Turn a MigrationError raised while checking into a failed result named by the docstring."""
    title = (fn.__doc__ or fn.__name__).splitlines()[0].rstrip(".")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
        try:
            return fn(*args, **kwargs)
        except MigrationError as exc:
            return failed(title, exc)
    return wrapper  # type: ignore[return-value]


@dataclass(repr=False)
class StepResult:
    """What one step did (or, planned, would do), with its evidence and the checks that proved it."""

    step: str
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    planned: bool = False
    #: What the step saw and did, for the reports: diffs, agent IDs before/after, counts, fingerprints.
    evidence: dict[str, Any] = field(default_factory=dict)
    #: The checks that proved the step's result (Then steps add theirs with :meth:`prove`).
    checks: list[CheckResult] = field(default_factory=list)

    def prove(self, result: CheckResult) -> CheckResult:
        """Attach a check's result to this step; returns it."""
        self.checks.append(result)
        return result

    @property
    def ok(self) -> bool:
        """Every attached check passed."""
        return all(c.ok for c in self.checks)

    def __repr__(self) -> str:
        return redact(f"StepResult(step={self.step!r}, changes={redact_obj(self.changes)!r}, "
                      f"notes={redact_obj(self.notes)!r}, planned={self.planned!r}, "
                      f"evidence={redact_obj(self.evidence)!r}, checks={self.checks!r})")
