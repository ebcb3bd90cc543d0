"""The guide's Step-by-Step Migration: When performs the step, Then proves its result.

Each Then calls one proof of :mod:`spire_migration.checks.migration_proofs` and records
it (with its evidence) for the reports; a dry run (--plan) changed nothing, so
there is nothing to prove.
"""

from __future__ import annotations

import pytest

from spire_migration.checks import migration_proofs as proofs
from spire_migration.checks import postmigration
from spire_migration.records.journal import Journal
from spire_migration.procedures.migration import Migration
from spire_migration.procedures.steprun import StepResult
from spire_migration.config.target import Target

from .common import bind_thens, bind_whens


@pytest.fixture(scope="session")
def migration(target: Target, plan_only: bool, run_journal: Journal) -> Migration:
    """One Migration per run (a plan writes nowhere: see the run_journal fixture)."""
    return Migration(target, run_journal, plan=plan_only, log=print)


def _facts(migration: Migration, n: int, result: StepResult, set_fact) -> None:
    """The summary's facts: the phase and agent before step 1, after steps 7 and 10."""
    if n == 1:
        set_fact("phase_before", migration.node.phase().value)
        set_fact("agent_before", migration.journal.fact("old_agent_id"))
    if n in (7, 10):
        set_fact("agent_after", migration.new_agent_id())
        set_fact("phase", migration.node.phase().value)


# -- When: the guide's steps, in its order ------------------------------------------
#: The sentence that performs each guide step (index 0 is step 1).
WHEN = (
    "Phase 3 is verified: server and agent healthy, the agent attested by join_token, the workload VERIFIED",
    "the TPM device is probed as detect_tpm.sh would",
    "server.conf, agent.conf and every registration entry are backed up into the journal",
    "the TPM node attestor is added to server.conf next to join_token and replaces join_token in agent.conf",
    "the Phase 3 spire-server is stopped by pid while the agent keeps serving",
    "spire-server is started and polled healthy, the old agent's entries are made for the new agent ID, "
    "then spire-agent is restarted without a join token",
    "TPM attestation is verified as verify_tpm.sh would",
    "every entry of the old agent is re-created under the TPM agent and the old ones are deleted by ID",
    "the Phase 4 workload is deployed through the target's runtime",
    "the workload is checked end to end: its SVID fetch and its mTLS exchange",
)


bind_whens(WHEN, procedure="migration", outcome="outcome", changes="guide_step", facts=_facts)

# -- Then: the proofs: (sentence, proof, the fixtures it is given) ---------------------------
bind_thens(outcome="outcome", rows=(
    ("the old join_token agent ID is recorded in the journal, redacted",
     proofs.old_agent_recorded, "migration"),
    ("the TPM is a TPM 2.0 with a sha256 PCR bank, an EK certificate and a re-creatable EK",
     proofs.tpm_ready, "migration"),
    ("the journal holds server.conf and agent.conf with their sha256, readable by root only",
     proofs.configs_backed_up, "migration outcome"),
    ("the journal holds every registration entry as JSON",
     proofs.entries_backed_up, "migration"),
    ("server.conf names the join_token and the TPM node attestors",
     proofs.server_has_both_attestors, "migration node"),
    ("agent.conf names exactly one node attestor, the TPM one, and no join_token setting",
     proofs.agent_has_only_tpm_attestor, "migration node"),
    ("everything else in both configs is as it was, comments included",
     proofs.rest_of_configs_kept, "migration node"),
    ("no spire-server runs the Phase 3 config and the agent still serves its cached SVID",
     proofs.phase3_server_stopped, "migration node outcome"),
    ("the old agent's entries existed under the new agent ID before the agent restarted",
     proofs.made_before_break, "migration node outcome"),
    ("spire-server is running and healthy with the Phase 4 config",
     proofs.phase4_server_started, "node outcome"),
    ("spire-agent runs without any join token and holds a new agent SVID",
     proofs.phase4_agent_started, "migration node outcome"),
    ("the agent ID is the TPM attestor's ID for this node",
     proofs.tpm_agent_id, "migration node"),
    ("the server lists the agent as TPM-attested with TPM selectors and its log records the attestation",
     postmigration.tpm_attestation_verified, "node"),
    ("every entry of the old agent is under the new agent with identical content",
     proofs.entries_moved, "migration node outcome"),
    ("no entry or node alias refers to the old agent and the old agent is evicted",
     proofs.old_agent_gone, "migration node outcome"),
    ("the Phase 4 workload is running",
     proofs.phase4_workload_running, "node outcome"),
    ('the workload logged "Successfully fetched SVIDs" and "VERIFIED" since the deploy',
     proofs.workload_verified_since_deploy, "migration node outcome"),
    ("the workload is served by the TPM-attested agent",
     proofs.served_by_tpm_agent, "migration node"),
))
