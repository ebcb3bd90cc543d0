"""The guide's Rollback Procedure: When performs the step, Then proves its result."""

from __future__ import annotations


import pytest
from pytest_bdd import given, parsers, then, when

from spire_migration import checks
from spire_migration.journal import Journal, sha256_file
from spire_migration.rollback import MIGRATION_STEPS, Rollback, backup_path
from spire_migration.steprun import StepResult
from spire_migration.node import Node
from spire_migration.target import Target

from .common import require


@pytest.fixture(scope="session")
def rollback(target: Target, plan_only: bool, run_journal: Journal) -> Rollback:
    """One Rollback per run (a plan writes nowhere: see the run_journal fixture)."""
    return Rollback(target, run_journal, plan=plan_only, log=print)


@given("the rollback journal of the target node")
def _journal(rollback: Rollback, set_fact) -> None:
    set_fact("_target", rollback.t)
    set_fact("plan", rollback.plan)


@when(parsers.parse("the rollback performs rollback step {n:d}"), target_fixture="rb_outcome")
def _perform(rollback: Rollback, n: int, record_changes, set_fact) -> StepResult:
    result = getattr(rollback, Rollback.STEPS[n - 1])()
    record_changes(f"rollback_step_{n}", result.changes)
    if n in (3, 4) and not result.planned:
        set_fact("agent_after", rollback.node.agent_id())
        set_fact("phase", rollback.node.phase().value)
    return result


def _proving(outcome: StepResult) -> bool:
    return not outcome.planned


@then("no Phase 4 SPIRE agent is running")
def _stopped(node: Node, rb_outcome: StepResult) -> None:
    if _proving(rb_outcome):
        agent = node.agent_proc()
        ident = node.agent_id() or ""
        assert agent is None or "/spire/agent/join_token/" in ident, \
            f"expected no TPM agent running, found pid {agent.pid} as {ident}"


@then("server.conf and agent.conf are byte-for-byte the Phase 3 backups")
def _restored(rollback: Rollback, node: Node, rb_outcome: StepResult) -> None:
    if not _proving(rb_outcome):
        return
    pairs = [("agent.conf", node.target.agent.config)]
    if not rollback.journal.fact("rollback_keeps_server_conf"):
        pairs.append(("server.conf", node.target.server.config))
    for name, path in pairs:
        backup = backup_path(rollback.journal, name)
        assert path.read_bytes() == backup.read_bytes(), \
            f"{path}: expected the bytes of {backup} (sha256 {sha256_file(backup)}), found sha256 {sha256_file(path)}"


@then("the agent runs attested by a new join token that appears nowhere in the journal")
def _new_token(rollback: Rollback, node: Node, rb_outcome: StepResult) -> None:
    if not _proving(rb_outcome):
        return
    require(checks.agent_attested_by(node, "join_token"))
    ident = node.agent_id() or ""
    assert ident != rollback.old_join_token_id(), "the agent still has the old (spent) join_token ID"
    token = ident.rsplit("/", 1)[-1]
    for path in rollback.journal.root.rglob("*"):
        if path.is_file() and path.parent.name != "backups" and "cycle-" not in str(path):
            leaked = token in path.read_text(errors="replace")   # a plain boolean: no file text in the report
            assert not leaked, f"the new join token leaked into {path}"


@then("every original entry is under the new join_token agent with its original content")
def _entries_back(rollback: Rollback, node: Node, rb_outcome: StepResult) -> None:
    if _proving(rb_outcome):
        missing = rollback.missing_entries(node)
        assert not missing, f"expected every exported entry back under {node.agent_id()}, missing {missing}"


@then("the TPM agent is evicted")
def _tpm_evicted(rollback: Rollback, node: Node, rb_outcome: StepResult) -> None:
    if _proving(rb_outcome):
        tpm_id = rollback.tpm_agent_id()
        assert tpm_id is None or node.agent_record(tpm_id) is None, f"{tpm_id} is still in the agent list"


@then("the pre-migration checks pass and the workload logged VERIFIED")
def _phase3(node: Node, rb_outcome: StepResult, record) -> None:
    if not _proving(rb_outcome):
        return
    for check in (checks.server_running, checks.agent_running, checks.workload_entry_under_agent,
                  checks.workload_verified, checks.tpm_usable, checks.critical_workloads_registered,
                  checks.registrations_known):
        require(record(check(node)))
    require(record(checks.agent_attested_by(node, "join_token")))


@then("the migration journal is reset for a new migration")
def _reset(rollback: Rollback, rb_outcome: StepResult) -> None:
    if _proving(rb_outcome):
        left = [s for s in MIGRATION_STEPS if s in rollback.journal.data["steps"]]
        assert not left, f"expected no migration step in the journal, found {left}"
