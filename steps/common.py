"""Steps shared by every feature: which node, and which phase it is in; and the binders
that turn a module's table of sentences into its When and Then steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from pytest_bdd import given, parsers, then, when

from spire_migration.node.facade import Node, Phase


@given("the target node")
def _target_node(node: Node, set_fact) -> Node:
    set_fact("_target", node.target)
    return node


@given(parsers.parse("the target node is in {phase}"))
def _node_in_phase(node: Node, phase: str, set_fact) -> None:
    """Phase awareness: a checklist that does not apply is 'not applicable', never passed."""
    set_fact("_target", node.target)
    current = node.phase()
    set_fact("phase", current.value)
    wanted = {"Phase 3": (Phase.PHASE3, Phase.TRANSITION, Phase.UNKNOWN),
              "Phase 4": (Phase.PHASE4, Phase.TRANSITION, Phase.UNKNOWN)}[phase]
    if current not in wanted:
        pytest.skip(f"not applicable: the node is in {current.value}, this checklist is for {phase}")


@given(parsers.re(r"the (?P<procedure>migration|rollback) journal of the target node"))
def _journal(procedure: str, request: pytest.FixtureRequest, set_fact) -> None:
    """The run's Migration or Rollback (the fixture of that name): its target and whether it only plans."""
    steps = request.getfixturevalue(procedure)
    set_fact("_target", steps.t)
    set_fact("plan", steps.plan)


def require(result) -> None:
    """Assert a CheckResult, failing with expected / found / remedy."""
    assert result.ok, result.message()


def prove(outcome, record, proof, *args) -> None:
    """Run a step's proof, record it with its evidence, assert it; a dry run (--plan) proves nothing."""
    if not outcome.planned:
        require(record(proof(*args)))


#: What a module's step n records besides its changes: facts(procedure, n, result, set_fact).
Facts = Callable[[Any, int, Any, Callable[[str, Any], None]], None]


def bind_whens(sentences: Iterable[str], *, procedure: str, outcome: str, changes: str, facts: Facts) -> None:
    """Bind sentence n (1-based) as the When that runs step n of the ``procedure`` fixture
    (a Migration or a Rollback: its ``STEPS[n - 1]``), records its changes as ``<changes>_<n>``
    and its facts, and returns its StepResult as the ``outcome`` fixture.

    Call it at the top of a step module: the steps are registered in that module.
    """
    for n, sentence in enumerate(sentences, 1):
        _bind_when(n, sentence, procedure, outcome, changes, facts)


def _bind_when(n: int, sentence: str, procedure: str, outcome: str, changes: str, facts: Facts) -> None:
    @when(sentence, target_fixture=outcome, stacklevel=3)
    def _step(request: pytest.FixtureRequest, record_changes, set_fact):
        steps = request.getfixturevalue(procedure)
        result = getattr(steps, steps.STEPS[n - 1])()
        record_changes(f"{changes}_{n}", result.changes)
        facts(steps, n, result, set_fact)
        return result


def bind_thens(rows: Iterable[tuple[str, Callable[..., Any], str]], *, outcome: str | None = None) -> None:
    """Bind each row ``(sentence, check, "fixture names")`` as the Then that runs
    ``check(*those fixtures)``, records the result with its evidence and asserts it.

    With ``outcome`` (the name of the When's StepResult fixture) it goes through :func:`prove`:
    a dry run (--plan) proves nothing. Call it at the top of a step module: the steps are
    registered in that module.
    """
    for sentence, check, names in rows:
        _bind_then(sentence, check, tuple(names.split()), outcome)


def _bind_then(sentence: str, check: Callable[..., Any], names: tuple[str, ...], outcome: str | None) -> None:
    @then(sentence, stacklevel=3)
    def _step(request: pytest.FixtureRequest, record) -> None:
        args = [request.getfixturevalue(name) for name in names]
        if outcome is None:
            require(record(check(*args)))
        else:
            prove(request.getfixturevalue(outcome), record, check, *args)
