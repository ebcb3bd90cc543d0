"""The guide's Rollback Procedure: When performs the step, Then proves its result.

Each Then calls one proof of :mod:`spire_migration.checks.rollback_proofs` (step 4 the
pre-migration checks) and records it with its evidence for the reports.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from spire_migration.checks import premigration as checks
from spire_migration.checks import rollback_proofs as proofs
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.procedures.rollback import Rollback
from spire_migration.procedures.steprun import StepResult
from spire_migration.config.target import Target

from .common import prove, require


@pytest.fixture(scope="session")
def rollback(target: Target, plan_only: bool, run_journal: Journal) -> Rollback:
    """One Rollback per run (a plan writes nowhere: see the run_journal fixture)."""
    return Rollback(target, run_journal, plan=plan_only, log=print)


@given("the rollback journal of the target node")
def _journal(rollback: Rollback, set_fact) -> None:
    set_fact("_target", rollback.t)
    set_fact("plan", rollback.plan)


def _perform(rollback: Rollback, n: int, record_changes, set_fact) -> StepResult:
    """Run rollback step *n*; record its changes and the summary's facts."""
    result = getattr(rollback, Rollback.STEPS[n - 1])()
    record_changes(f"rollback_step_{n}", result.changes)
    if n in (3, 4) and not result.planned:
        set_fact("agent_after", rollback.node.agent_id())
        set_fact("phase", rollback.node.phase().value)
    return result


# -- When: the guide's rollback steps, in its order ----------------------------------
#: The sentence that performs each rollback step (index 0 is step 1).
WHEN = (
    "the Phase 4 spire-agent, and spire-server unless other nodes still need it, are stopped by pid",
    "server.conf and agent.conf are restored from the journal's hash-checked backups",
    "Phase 3 is restarted with a new join token and every entry is re-parented under the new join_token agent",
    "Phase 3 is verified as the pre-migration checklist does",
)


def _bind(n: int, sentence: str) -> None:
    @when(sentence, target_fixture="rb_outcome", stacklevel=2)
    def _step(rollback: Rollback, record_changes, set_fact) -> StepResult:
        return _perform(rollback, n, record_changes, set_fact)


for _n, _sentence in enumerate(WHEN, 1):
    _bind(_n, _sentence)


# -- Then: the proofs -------------------------------------------------------------
@then("no Phase 4 SPIRE agent is running")
def _stopped(rollback: Rollback, node: Node, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.phase4_agent_stopped, rollback, node, rb_outcome)


@then("server.conf and agent.conf are byte-for-byte the Phase 3 backups")
def _restored(rollback: Rollback, node: Node, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.configs_restored, rollback, node, rb_outcome)


@then("the agent runs attested by a new join token that appears nowhere in the journal")
def _new_token(rollback: Rollback, node: Node, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.new_join_token_agent, rollback, node, rb_outcome)


@then("every original entry is under the new join_token agent with its original content")
def _entries_back(rollback: Rollback, node: Node, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.entries_back, rollback, node, rb_outcome)


@then("the TPM agent is evicted")
def _tpm_evicted(rollback: Rollback, node: Node, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.tpm_agent_evicted, rollback, node, rb_outcome)


@then("the pre-migration checks pass and the workload logged VERIFIED")
def _phase3(node: Node, rb_outcome: StepResult, record) -> None:
    if rb_outcome.planned:
        return
    for check in (checks.server_running, checks.agent_running, checks.workload_entry_under_agent,
                  checks.workload_verified, checks.tpm_usable, checks.critical_workloads_registered,
                  checks.registrations_known):
        require(record(check(node)))
    require(record(checks.agent_attested_by(node, "join_token")))


@then("the migration journal is reset for a new migration")
def _reset(rollback: Rollback, rb_outcome: StepResult, record) -> None:
    prove(rb_outcome, record, proofs.migration_journal_reset, rollback, rb_outcome)
