"""The guide's Rollback Procedure: When performs the step, Then proves its result.

Each Then calls one proof of :mod:`spire_migration.checks.rollback_proofs` (step 4 the
pre-migration checks) and records it with its evidence for the reports.
"""

from __future__ import annotations

import pytest
from pytest_bdd import then

from spire_migration.checks import premigration as checks
from spire_migration.checks import rollback_proofs as proofs
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.procedures.rollback import Rollback
from spire_migration.procedures.steprun import StepResult
from spire_migration.config.target import Target

from .common import bind_thens, bind_whens, require


@pytest.fixture(scope="session")
def rollback(target: Target, plan_only: bool, run_journal: Journal) -> Rollback:
    """One Rollback per run (a plan writes nowhere: see the run_journal fixture)."""
    return Rollback(target, run_journal, plan=plan_only, log=print)


def _facts(rollback: Rollback, n: int, result: StepResult, set_fact) -> None:
    """The summary's facts: the agent and phase after steps 3 and 4 (a plan changed neither)."""
    if n in (3, 4) and not result.planned:
        set_fact("agent_after", rollback.node.agent_id())
        set_fact("phase", rollback.node.phase().value)


# -- When: the guide's rollback steps, in its order ----------------------------------
#: The sentence that performs each rollback step (index 0 is step 1).
WHEN = (
    "the Phase 4 spire-agent, and spire-server unless other nodes still need it, are stopped by pid",
    "server.conf and agent.conf are restored from the journal's hash-checked backups",
    "Phase 3 is restarted with a new join token and every entry is re-parented under the new join_token agent",
    "Phase 3 is verified as the pre-migration checklist does",
)


bind_whens(WHEN, procedure="rollback", outcome="rb_outcome", changes="rollback_step", facts=_facts)

# -- Then: the proofs: (sentence, proof, the fixtures it is given) ---------------------------
bind_thens(outcome="rb_outcome", rows=(
    ("no Phase 4 SPIRE agent is running",
     proofs.phase4_agent_stopped, "rollback node rb_outcome"),
    ("server.conf and agent.conf are byte-for-byte the Phase 3 backups",
     proofs.configs_restored, "rollback node rb_outcome"),
    ("the agent runs attested by a new join token that appears nowhere in the journal",
     proofs.new_join_token_agent, "rollback node rb_outcome"),
    ("every original entry is under the new join_token agent with its original content",
     proofs.entries_back, "rollback node rb_outcome"),
    ("the TPM agent is evicted",
     proofs.tpm_agent_evicted, "rollback node rb_outcome"),
    ("the migration journal is reset for a new migration",
     proofs.migration_journal_reset, "rollback rb_outcome"),
))


@then("the pre-migration checks pass and the workload logged VERIFIED")
def _phase3(node: Node, rb_outcome: StepResult, record) -> None:
    if rb_outcome.planned:
        return
    for check in (checks.server_running, checks.agent_running, checks.workload_entry_under_agent,
                  checks.workload_verified, checks.tpm_usable, checks.critical_workloads_registered,
                  checks.registrations_known):
        require(record(check(node)))
    require(record(checks.agent_attested_by(node, "join_token")))
