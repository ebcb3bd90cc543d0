"""Rollback's journal logic without a lab: cycles, refusals, and the token never written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from spire_migration.checks.diagnose import Diagnosis, TPM2_CLEAR_WARNING
from spire_migration.errors import JournalError
from spire_migration.records.journal import Journal
from spire_migration.procedures.rollback import Rollback, backup_path
from spire_migration.config.target import Target

OLD = "spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"


def _migrated_journal(tmp_path: Path) -> tuple[Target, Journal]:
    server, agent = tmp_path / "server.conf", tmp_path / "agent.conf"
    server.write_text('server {}\nplugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n')
    agent.write_text('agent {}\nplugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n')
    t = Target.from_dict({"server": {"config": str(server), "socket": str(tmp_path / "none.sock")},
                          "agent": {"config": str(agent)}, "journal": {"dir": str(tmp_path / "j")}})
    j = Journal(tmp_path / "j" / t.node)
    j.backup_file("server.conf", server)
    j.backup_file("agent.conf", agent)
    j.backup_data("identity.json", json.dumps({"old_agent_id": OLD}))
    j.backup_data("entries.json", json.dumps({"entries": [
        {"id": "a", "spiffe_id": "spiffe://example.org/agent", "parent_id": OLD,
         "selectors": [{"type": "spiffe_id", "value": OLD}]},
        {"id": "b", "spiffe_id": "spiffe://example.org/k8s-workload", "parent_id": OLD,
         "selectors": [{"type": "docker", "value": "label:a:b"}]}]}))
    for n in range(1, 11):
        j.complete(f"guide_step_{n}", [])
    return t, j


def test_token_alias_comes_from_the_exported_entries(tmp_path):
    t, j = _migrated_journal(tmp_path)
    rb = Rollback(t, j)
    assert rb.old_join_token_id() == OLD
    assert rb.token_alias() == "spiffe://example.org/agent"


def test_altered_or_missing_backup_refuses_before_anything(tmp_path):
    t, j = _migrated_journal(tmp_path)
    (j.backups / "agent.conf").write_text("tampered")
    with pytest.raises(JournalError, match="backup agent.conf was altered"):
        Rollback(t, j).step1_stop_phase4()
    (j.backups / "agent.conf").unlink()
    with pytest.raises(JournalError, match="backup agent.conf is missing"):
        Rollback(t, j).step2_restore_configs()
    assert not j.done("rollback_step_1")


def test_nothing_to_roll_back_without_a_migration(tmp_path):
    t = Target.from_dict({"journal": {"dir": str(tmp_path)}})
    with pytest.raises(JournalError, match="no migration to roll back"):
        Rollback(t, Journal(tmp_path / t.node)).step1_stop_phase4()


def test_retire_cycle_resets_migration_and_keeps_backups(tmp_path):
    t, j = _migrated_journal(tmp_path)
    rb = Rollback(t, j)
    for n in range(1, 5):
        j.complete(f"rollback_step_{n}", [])
    changes = rb.retire_cycle()
    assert changes and not any(s.startswith("guide_step_") for s in j.data["steps"])
    assert not j.has_backup("server.conf") and j.verify_backup("cycle-1/server.conf")
    assert backup_path(j, "identity.json").parent.name == "cycle-1"
    assert rb.old_join_token_id() == OLD           # still known after retiring
    assert rb.step_done(4) and rb.retire_cycle() == []   # idempotent
    time.sleep(0.01)
    j.complete("guide_step_1", [])                 # a new migration starts: old rollback steps are stale
    assert not rb.step_done(1)
    assert OLD.rsplit("/", 1)[1] not in j.path.read_text()


def test_diagnosis_text_warns_about_tpm2_clear():
    d = Diagnosis(1, "Agent Fails to Attest with TPM", "wrong_tpm_device_path", "wrong path",
                  ["agent.conf tpm_device_path = '/dev/nope'"], ["Verify TPM device path"], [TPM2_CLEAR_WARNING])
    assert d.fault and "tpm2_clear" in d.text() and "DevID" in d.text()
