"""The fleet rollback parts (feature 11): the Given picks the part the scenario's tag names,
each When performs one step of it, each Then proves it (spire_migration/checks/fleet_rollback_proofs.py)."""

from __future__ import annotations

from collections.abc import Iterator
import pytest
from pytest_bdd import given

from spire_migration.checks import fleet_rollback_proofs as proofs
from spire_migration.config.target import Target
from spire_migration.procedures.fleet_rollback import AgentRollback, RollbackHandoff, RollbackReparent, RollbackToken
from spire_migration.records.journal import Journal

from .common import bind_thens
from .fleet import bind_part_whens, handoff_text, not_this_node, part_class, server_journal_of

#: part tag -> the class that performs it
PARTS = {"part_rollback_token": RollbackToken, "part_rollback_agent": AgentRollback,
         "part_rollback_reparent": RollbackReparent}


@pytest.fixture(scope="session")
def rollback_handoff(pytestconfig: pytest.Config, target: Target) -> RollbackHandoff:
    """The node's rollback handoff (``--handoff FILE``), checked against the server host's target."""
    h = RollbackHandoff.parse(handoff_text(pytestconfig, "reparent", "rollback-handoff.json"), target.trust_domain)
    not_this_node(h.node, target)
    return h


@pytest.fixture(scope="session")
def rollback_handoff_journal(target: Target, rollback_handoff: RollbackHandoff, plan_only: bool) -> Iterator[Journal]:
    """The server host's journal of the rollback handoff's node, locked."""
    yield from server_journal_of(target, rollback_handoff.node, plan_only)


@given("the fleet rollback part of the target node", target_fixture="rb_part")
def _part(request: pytest.FixtureRequest, target: Target, plan_only: bool, set_fact):
    """The part the scenario's tag names, on the journal it works with."""
    kind = part_class(request, PARTS, target, plan_only, set_fact)
    if kind is RollbackToken:
        return kind(target, request.getfixturevalue("handoff_journal"), request.getfixturevalue("handoff"),
                    plan=plan_only, log=print)
    if kind is RollbackReparent:
        return kind(target, request.getfixturevalue("rollback_handoff_journal"),
                    request.getfixturevalue("rollback_handoff"), plan=plan_only, log=print)
    return kind(target, request.getfixturevalue("run_journal"), plan=plan_only, log=print)


#: When sentence -> the part's method it performs
WHEN = (
    ("a new join token for the node is written to a private file and its entries are made for the join_token "
     "agent it gives", "issue"),
    ("the node's TPM agent is stopped by pid once the way back and the new token are both on the node",
     "node_stop_tpm_agent"),
    ("the node's agent.conf is restored from its journal's hash-checked backup", "node_restore_agent_conf"),
    ("the node's agent is restarted with its new join token and its join_token attestation is proven",
     "node_start_join_token_agent"),
    ("the node's Phase 3 workload is redeployed and checked end to end", "node_verify_phase3"),
    ("the node's TPM agent is retired on the server host once its join_token agent is listed", "break_"),
)


def _facts(rb_part, method: str, result, set_fact) -> None:
    if method == "node_stop_tpm_agent":
        set_fact("agent_before", rb_part.journal.fact("rollback_tpm_agent"))
    if method in ("node_start_join_token_agent", "node_verify_phase3") and not result.planned:
        set_fact("agent_after", rb_part.journal.fact("rollback_new_agent"))


bind_part_whens(WHEN, part="rb_part", outcome="rb_part_outcome", prefix="fleet_rollback", facts=_facts)

bind_thens(outcome="rb_part_outcome", rows=(
    ("the node's token is in a 0600 file and nowhere in the journal", proofs.token_private, "rb_part"),
    ("every entry of the node's TPM agent has its copy for the join_token agent of the new token",
     proofs.made_for_token_agent, "rb_part rb_part_outcome"),
    ("no Phase 4 SPIRE agent runs on the node", proofs.no_tpm_agent, "rb_part"),
    ("the node's agent.conf is byte for byte its Phase 3 backup", proofs.agent_conf_restored, "rb_part"),
    ("the node's agent is the join_token agent of its new token, and the token file is gone",
     proofs.join_token_agent, "rb_part"),
    ("the rollback handoff names the node, its redacted join_token agent and its TPM agent, and holds no secret",
     proofs.rollback_handoff_written, "rb_part"),
    ("the node's workload logged VERIFIED from its join_token agent", proofs.workload_verified, "rb_part"),
    ("no entry refers to the node's TPM agent and it is evicted", proofs.tpm_agent_retired,
     "rb_part rb_part_outcome"),
))
