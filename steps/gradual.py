"""Strategy 2 (gradual migration, dual attestation) and finalize."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from spire_migration import finalize as fin
from spire_migration.journal import Journal
from spire_migration.node import TPM_ATTESTORS, Node
from spire_migration.redact import redact
from spire_migration.target import Target
from spire_migration.verdict import CheckResult, StepResult

from .common import require


@then("the server runs the join_token and the TPM node attestors side by side")
def _dual(node: Node, record) -> None:
    found = set(node.server_config().plugins("NodeAttestor"))
    if not found & set(TPM_ATTESTORS):
        pytest.skip("not applicable: the server has no TPM attestor yet (no node migrated)")
    if "join_token" not in found:
        pytest.skip("not applicable: join_token was removed (finalized)")
    require(record(CheckResult("server runs join_token and the TPM attestor side by side",
                               node.server.healthy(), "a healthy server with both NodeAttestors",
                               f"NodeAttestors {sorted(found)}, server {'healthy' if node.server.healthy() else 'NOT healthy'}",
                               {"node_attestors": sorted(found)})))


@then("every agent of the server is listed with its node attestation method")
def _listed(node: Node, record) -> None:
    groups = fin.agents_by_attestor(node.target)
    evidence = {kind: [fin.describe(a) for a in agents] for kind, agents in groups.items()}
    mine = node.agent_id()
    listed = any(a["id"] == mine for agents in groups.values() for a in agents)
    odd = sorted(set(groups) - {"join_token", *TPM_ATTESTORS})
    require(record(CheckResult("which agents use which attestation method", listed and not odd,
                               "every agent attested by join_token or a TPM attestor, this node's among them",
                               redact("; ".join(f"{k}: {len(v)}" for k, v in evidence.items()) +
                                      ("" if listed else f"; this node's agent {mine} is not listed") +
                                      (f"; other methods {odd}" if odd else "")),
                               evidence)))


@pytest.fixture
def finalize_journal(target: Target, request: pytest.FixtureRequest) -> Journal:
    if not request.config.getoption("--plan"):
        request.getfixturevalue("node_lock")
    return request.getfixturevalue("journal")


@given("the finalize journal of the target node", target_fixture="fin_journal")
def _fin_journal(finalize_journal: Journal, target: Target, set_fact) -> Journal:
    set_fact("_target", target)
    return finalize_journal


@when("the join_token node attestor is removed from the server", target_fixture="fin_outcome")
def _finalize(target: Target, fin_journal: Journal, plan_only: bool, record_changes) -> StepResult:
    result = fin.finalize(target, fin_journal, plan=plan_only)
    record_changes("finalize", result.changes)
    return result


@then("the server config has no join_token node attestor and the server is healthy")
def _no_join_token(node: Node, fin_outcome: StepResult) -> None:
    if fin_outcome.planned:
        return
    found = sorted(node.server_config().plugins("NodeAttestor"))
    assert "join_token" not in found, f"server NodeAttestors: expected no join_token, found {found}"
    assert node.server.healthy(), "spire-server is not healthy after the restart"


@then("every agent of the server is TPM-attested")
def _all_tpm(node: Node, fin_outcome: StepResult, record) -> None:
    if fin_outcome.planned:
        return
    groups = fin.agents_by_attestor(node.target)
    other = {k: [fin.describe(a) for a in v] for k, v in groups.items() if k not in TPM_ATTESTORS}
    assert not other, f"expected only TPM-attested agents, found {other}"
