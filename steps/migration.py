"""The guide's Step-by-Step Migration: When performs the step, Then proves its result."""

from __future__ import annotations

import json
import os
import stat

import pytest
from pytest_bdd import given, parsers, then, when

from spire_migration import attestor, services
from spire_migration.journal import Journal
from spire_migration.migration import Migration
from spire_migration.steprun import StepResult
from spire_migration.node import Node
from spire_migration.reregister import moved_content
from spire_migration.spire import entry_content, id_str
from spire_migration.target import Target


@pytest.fixture(scope="session")
def migration(target: Target, plan_only: bool, run_journal: Journal) -> Migration:
    """One Migration per run (a plan writes nowhere: see the run_journal fixture)."""
    return Migration(target, run_journal, plan=plan_only, log=print)


@given("the migration journal of the target node")
def _journal(migration: Migration, set_fact) -> None:
    set_fact("_target", migration.t)
    set_fact("plan", migration.plan)


@when(parsers.parse("the migration performs guide step {n:d}"), target_fixture="outcome")
def _perform(migration: Migration, n: int, record_changes, set_fact) -> StepResult:
    result = getattr(migration, Migration.STEPS[n - 1])()
    record_changes(f"guide_step_{n}", result.changes)
    if n == 1:
        set_fact("phase_before", migration.node.phase().value)
        set_fact("agent_before", migration.journal.fact("old_agent_id"))
    if n == 10 or n == 7:
        set_fact("agent_after", migration.new_agent_id())
        set_fact("phase", migration.node.phase().value)
    return result


def _proving(outcome: StepResult) -> bool:
    """In a dry run nothing changed, so there is nothing new to prove."""
    return not outcome.planned


@then("the old join_token agent ID is recorded in the journal")
def _old_id_recorded(migration: Migration, outcome: StepResult) -> None:
    if _proving(outcome):
        old = migration.old_agent_id()
        assert old and "/spire/agent/join_token/" in old, f"expected the old join_token agent ID, found {old!r}"
        assert "<redacted" in (migration.journal.fact("old_agent_id") or ""), "the journal must hold it redacted"


@then("the TPM was found usable for TPM attestation")
def _tpm_usable(outcome: StepResult) -> None:
    assert outcome.notes and "EK certificate present" in outcome.notes[0], outcome.notes


@then("the journal holds both configs and every registration entry, readable by root only")
def _backups(migration: Migration, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    j = migration.journal
    for name in ("server.conf", "agent.conf", "entries.json"):
        path = j.verify_backup(name)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, f"{path}: expected mode 0600, found {oct(mode)}"
    assert stat.S_IMODE(os.stat(j.backups).st_mode) == 0o700
    exported = json.loads((j.backups / "entries.json").read_text())["entries"]
    assert exported, "expected the exported entries, found none"


@then("the server config has the join_token and the TPM node attestors")
def _server_conf(node: Node, outcome: StepResult) -> None:
    if _proving(outcome):
        found = set(node.server_config().plugins("NodeAttestor"))
        want = {"join_token", attestor.plugin_name(node.target)}
        if "join_token" not in found:   # finalized: allowed only once no join_token agent remains
            left = [a for a in node.agents if a.get("attestation_type") == "join_token"]
            assert not left, f"join_token removed from the server while {len(left)} join_token agent(s) remain"
            want.discard("join_token")
        assert want <= found, f"server NodeAttestors: expected {sorted(want)}, found {sorted(found)}"


@then("the agent config has exactly one node attestor, the TPM one")
def _agent_conf(node: Node, outcome: StepResult) -> None:
    if _proving(outcome):
        cfg = node.agent_config()
        found = sorted(cfg.plugins("NodeAttestor"))
        assert found == [attestor.plugin_name(node.target)], f"agent NodeAttestors: expected exactly " \
            f"[{attestor.plugin_name(node.target)}] (SPIRE agents take one), found {found}"
        assert "join_token" not in cfg.section("agent"), "agent config still carries a join_token"


@then("everything else in both configs is as it was")
def _rest_unchanged(migration: Migration, node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    from spire_migration.hclconfig import load_config
    for name, now in (("server.conf", node.server_config()), ("agent.conf", node.agent_config())):
        before = load_config(migration.journal.verify_backup(name))
        for kind in ("DataStore", "KeyManager", "WorkloadAttestor"):
            assert now.plugins(kind) == before.plugins(kind), f"{name}: {kind} changed"
        comments = [line for line in before.text.splitlines() if line.strip().startswith("#")]
        missing = [c for c in comments if c not in now.text]
        assert not missing, f"{name}: comments lost: {missing}"


@then("no Phase 3 SPIRE process is running")
def _phase3_stopped(node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    agent = node.agent_proc()
    assert agent is None or "-joinToken" not in agent.argv, f"a join_token agent still runs: pid {agent.pid}"
    server = node.server_proc()
    assert server is None or not services.started_before(server, node.target.server.config), \
        f"spire-server pid {server.pid} still runs the Phase 3 config"


@then("the server is healthy and the agent runs without any join token")
def _phase4_started(node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    assert node.server.healthy(), "spire-server is not healthy"
    agent = node.agent_proc()
    assert agent is not None and node.agent.healthy(), "spire-agent is not running and healthy"
    assert "-joinToken" not in agent.argv, "the agent was started with -joinToken: it would attest by join_token"


@then("the agent is attested by the TPM attestor with the expected agent ID")
def _tpm_attested(migration: Migration, node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    want = attestor.expected_agent_id(node.target)
    ident = node.agent_id()
    assert ident == want, f"agent ID: expected {want}, found {ident}"
    record = node.agent_record(ident) or {}
    assert record.get("attestation_type") == node.target.attestor.profile, record


@then("every entry of the old agent is under the new agent with identical content")
def _entries_moved(migration: Migration, node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    old = migration.old_agent_id()
    parent = node.target.attestor.node_alias or migration.new_agent_id()
    exported = json.loads((migration.journal.verify_backup("entries.json")).read_text())["entries"]
    wanted = sorted(json.dumps(moved_content(e, old, parent), sort_keys=True)
                    for e in exported if id_str(e["parent_id"]) == old)
    found = sorted(json.dumps(entry_content(e), sort_keys=True) for e in node.entries if id_str(e["parent_id"]) == parent)
    missing = [w for w in wanted if w not in found]
    assert wanted and not missing, f"expected {len(wanted)} entries under {parent}, missing {missing[:3]}"


@then("no entry or node alias refers to the old agent")
def _old_gone(migration: Migration, node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    old = migration.old_agent_id()
    left = [id_str(e["spiffe_id"]) for e in node.entries
            if id_str(e["parent_id"]) == old or any(s["value"] == old for s in e.get("selectors") or [])]
    assert not left, f"entries still referring to the old agent: {left}"


@then("the Phase 4 workload is running")
def _workload_phase4(node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    running = [i for i in node.runtime.instances() if i.phase == 4 and i.state.lower() == "running"]
    assert running, f"expected Phase 4 workload instances, found {[(i.name, i.phase, i.state) for i in node.runtime.instances()]}"


@then("the workload fetched its SVID from the TPM-attested agent and logged VERIFIED")
def _e2e(node: Node, outcome: StepResult) -> None:
    if not _proving(outcome):
        return
    text = "\n".join(outcome.notes)
    assert "VERIFIED" in text and "Successfully fetched SVIDs" in text, text
    assert f"/spire/agent/{node.target.attestor.profile}/" in (node.agent_id() or ""), node.agent_id()
