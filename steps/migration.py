"""The guide's Step-by-Step Migration: When performs the step, Then proves its result.

Each Then calls one proof of :mod:`spire_migration.checks.migration_proofs` and records
it (with its evidence) for the reports; a dry run (--plan) changed nothing, so
there is nothing to prove.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from spire_migration.checks import migration_proofs as proofs
from spire_migration.checks import postmigration
from spire_migration.records.journal import Journal
from spire_migration.procedures.migration import Migration
from spire_migration.node.facade import Node
from spire_migration.procedures.steprun import StepResult
from spire_migration.config.target import Target

from .common import prove


@pytest.fixture(scope="session")
def migration(target: Target, plan_only: bool, run_journal: Journal) -> Migration:
    """One Migration per run (a plan writes nowhere: see the run_journal fixture)."""
    return Migration(target, run_journal, plan=plan_only, log=print)


@given("the migration journal of the target node")
def _journal(migration: Migration, set_fact) -> None:
    set_fact("_target", migration.t)
    set_fact("plan", migration.plan)


def _perform(migration: Migration, n: int, record_changes, set_fact) -> StepResult:
    """Run guide step *n*; record its changes and the summary's facts."""
    result = getattr(migration, Migration.STEPS[n - 1])()
    record_changes(f"guide_step_{n}", result.changes)
    if n == 1:
        set_fact("phase_before", migration.node.phase().value)
        set_fact("agent_before", migration.journal.fact("old_agent_id"))
    if n in (7, 10):
        set_fact("agent_after", migration.new_agent_id())
        set_fact("phase", migration.node.phase().value)
    return result


# -- When: the guide's steps, in its order ------------------------------------------
#: The sentence that performs each guide step (index 0 is step 1).
WHEN = (
    "Phase 3 is verified: server and agent healthy, the agent attested by join_token, the workload VERIFIED",
    "the TPM device is probed as detect_tpm.sh would",
    "server.conf, agent.conf and every registration entry are backed up into the journal",
    "the TPM node attestor is added to server.conf next to join_token and replaces join_token in agent.conf",
    "the Phase 3 spire-agent and spire-server are stopped by pid",
    "spire-server is started and polled healthy, then spire-agent without a join token",
    "TPM attestation is verified as verify_tpm.sh would",
    "every entry of the old agent is re-created under the TPM agent and the old ones are deleted by ID",
    "the Phase 4 workload is deployed through the target's runtime",
    "the workload is checked end to end: its SVID fetch and its mTLS exchange",
)


def _bind(n: int, sentence: str) -> None:
    @when(sentence, target_fixture="outcome", stacklevel=2)
    def _step(migration: Migration, record_changes, set_fact) -> StepResult:
        return _perform(migration, n, record_changes, set_fact)


for _n, _sentence in enumerate(WHEN, 1):
    _bind(_n, _sentence)


# -- Then: the proofs -------------------------------------------------------------
@then("the old join_token agent ID is recorded in the journal, redacted")
def _old_id(migration: Migration, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.old_agent_recorded, migration)


@then("the TPM is a TPM 2.0 with a sha256 PCR bank, an EK certificate and a re-creatable EK")
def _tpm(migration: Migration, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.tpm_ready, migration)


@then("the journal holds server.conf and agent.conf with their sha256, readable by root only")
def _configs_backed_up(migration: Migration, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.configs_backed_up, migration, outcome)


@then("the journal holds every registration entry as JSON")
def _entries_backed_up(migration: Migration, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.entries_backed_up, migration)


@then("server.conf names the join_token and the TPM node attestors")
def _server_conf(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.server_has_both_attestors, migration, node)


@then("agent.conf names exactly one node attestor, the TPM one, and no join_token setting")
def _agent_conf(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.agent_has_only_tpm_attestor, migration, node)


@then("everything else in both configs is as it was, comments included")
def _rest_unchanged(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.rest_of_configs_kept, migration, node)


@then("no Phase 3 SPIRE process is running")
def _phase3_stopped(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.phase3_stopped, migration, node, outcome)


@then("spire-server is running and healthy with the Phase 4 config")
def _server_started(node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.phase4_server_started, node, outcome)


@then("spire-agent runs without any join token and holds a new agent SVID")
def _agent_started(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.phase4_agent_started, migration, node, outcome)


@then("the agent ID is the TPM attestor's ID for this node")
def _tpm_agent_id(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.tpm_agent_id, migration, node)


@then("the server lists the agent as TPM-attested with TPM selectors and its log records the attestation")
def _tpm_listed(node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, postmigration.tpm_attestation_verified, node)


@then("every entry of the old agent is under the new agent with identical content")
def _entries_moved(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.entries_moved, migration, node, outcome)


@then("no entry or node alias refers to the old agent and the old agent is evicted")
def _old_gone(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.old_agent_gone, migration, node, outcome)


@then("the Phase 4 workload is running")
def _workload_phase4(node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.phase4_workload_running, node, outcome)


@then('the workload logged "Successfully fetched SVIDs" and "VERIFIED" since the deploy')
def _e2e_logs(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.workload_verified_since_deploy, migration, node, outcome)


@then("the workload is served by the TPM-attested agent")
def _e2e_agent(migration: Migration, node: Node, outcome: StepResult, record) -> None:
    prove(outcome, record, proofs.served_by_tpm_agent, migration, node)
