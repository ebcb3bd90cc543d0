"""Steps shared by every feature: which node, and which phase it is in."""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers

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


def require(result) -> None:
    """Assert a CheckResult, failing with expected / found / remedy."""
    assert result.ok, result.message()


def prove(outcome, record, proof, *args) -> None:
    """Run a step's proof, record it with its evidence, assert it; a dry run (--plan) proves nothing."""
    if not outcome.planned:
        require(record(proof(*args)))
