"""Strategy 2 (gradual migration, dual attestation) and finalize: thin steps over
:mod:`spire_migration.checks.gradual_proofs` and :mod:`spire_migration.procedures.finalize`."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from spire_migration.procedures import finalize as fin
from spire_migration.checks import gradual_proofs as proofs
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.config.target import Target
from spire_migration.verdict import StepResult

from .common import bind_thens, require


@then("the server runs the join_token and the TPM node attestors side by side")
def _dual(node: Node, record) -> None:
    state = proofs.dual_mode_state(node)
    if state == "no_tpm":
        pytest.skip("not applicable: the server has no TPM attestor yet (no node migrated)")
    if state == "finalized":
        pytest.skip("not applicable: join_token was removed (finalized)")
    require(record(proofs.server_dual_mode(node)))


bind_thens(rows=(
    ("every agent of the server is listed with its node attestation method",
     proofs.agents_listed_by_method, "node"),
))


@pytest.fixture
def finalize_journal(target: Target, request: pytest.FixtureRequest) -> Journal:
    if not request.config.getoption("--plan"):
        request.getfixturevalue("node_lock")
    return request.getfixturevalue("journal")


@given("the finalize journal of the target node", target_fixture="fin_journal")
def _fin_journal(finalize_journal: Journal, target: Target, set_fact) -> Journal:
    set_fact("_target", target)
    return finalize_journal


@when("the join_token node attestor is removed from server.conf and the server restarted",
      target_fixture="fin_outcome")
def _finalize(target: Target, fin_journal: Journal, plan_only: bool, record_changes) -> StepResult:
    result = fin.finalize(target, fin_journal, plan=plan_only)
    record_changes("finalize", result.changes)
    return result


bind_thens(outcome="fin_outcome", rows=(
    ("server.conf has no join_token node attestor and the server is healthy",
     proofs.join_token_removed, "node fin_outcome"),
    ("every agent of the server is TPM-attested",
     proofs.every_agent_tpm, "node"),
))
