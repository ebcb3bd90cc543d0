"""`pytest -m migrate` against the lab: performs, is idempotent, resumes, refuses bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from spire_migration.node import services
from spire_migration.procedures.faults import ENV as KILL_AT
from spire_migration.procedures.reregister import moved_content
from spire_migration.node.spire import entry_content, id_str

pytestmark = pytest.mark.lab


def _files(lab) -> dict[str, str]:
    """sha256 of every file the migration could touch (configs, DevID, journal...)."""
    out = {}
    for path in sorted(Path(lab.root).rglob("*")):
        rel = str(path.relative_to(lab.root))
        if path.is_file() and not rel.startswith(("docker/", "summary-")) and not path.name.endswith(".log") \
                and "/tpm/" not in rel and "/data/" not in rel and not rel.endswith("/lock"):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _node_state(lab) -> tuple:
    t = lab.target
    server = services.server_cli(t)
    entries = sorted(json.dumps(entry_content(e) | {"parent": id_str(e["parent_id"])}, sort_keys=True)
                     for e in server.entries())
    agents = sorted(id_str(a["id"]) for a in server.agents())
    procs = (services.server_proc(t).pid, services.agent_proc(t).pid)
    containers = sorted(i.id for i in __import__("spire_migration.node.runtimes", fromlist=["x"]).get_runtime(t).instances())
    return entries, agents, procs, containers


def _phase3_entries(lab) -> tuple[str, list[dict]]:
    t = lab.target
    return services.agent_identity(t), services.server_cli(t).entries()


def _assert_migrated(lab, old_id: str, before: list[dict]) -> None:
    t = lab.target
    new_id = services.agent_identity(t)
    assert new_id.startswith("spiffe://example.org/spire/agent/tpm_devid/")
    record = services.server_cli(t).agent(new_id)
    assert record["attestation_type"] == "tpm_devid"
    after = services.server_cli(t).entries()
    wanted = sorted(json.dumps(moved_content(e, old_id, new_id), sort_keys=True)
                    for e in before if id_str(e["parent_id"]) == old_id)
    found = sorted(json.dumps(entry_content(e), sort_keys=True) for e in after if id_str(e["parent_id"]) == new_id)
    assert wanted == found, "every entry of the old agent must be under the new one, identical"
    assert not [e for e in after if id_str(e["parent_id"]) == old_id]


def test_plan_changes_no_byte(lab):
    files, state = _files(lab), _node_state(lab)
    run = lab.run_suite("-m", "migrate", "--plan")
    assert run.code == 0, run.output[-3000:]
    assert "+    NodeAttestor \"tpm_devid\" {" in run.output      # config changes shown as diffs
    assert "create spiffe://example.org/k8s-workload under spiffe://example.org/spire/agent/tpm_devid/" in run.output
    assert _files(lab) == files and _node_state(lab) == state
    assert not (lab.target.journal_root / "journal.json").exists()


def test_malformed_agent_conf_stops_before_any_change(lab):
    conf = lab.target.agent.config
    original = conf.read_bytes()
    conf.write_bytes(original + b"\nplugins {\n  NodeAttestor \"x\" {\n")
    try:
        files, state = _files(lab), _node_state(lab)
        run = lab.run_suite("-m", "migrate")
        assert run.code == 1
        assert run.status("guide_step_1") == "failed" and run.status("guide_step_4") == "not_run"
        assert "agent.conf" in run.output and "valid HCL" in run.output
        assert "the way back" in run.output and "spire-migration rollback --target" in run.output
        assert _files(lab) == files and _node_state(lab) == state   # (the run's lock file aside)
        assert not (lab.target.journal_root / "journal.json").exists()
    finally:
        conf.write_bytes(original)


def test_migrate_then_again_changes_nothing(lab):
    old_id, before = _phase3_entries(lab)
    first = lab.run_suite("-m", "migrate")
    assert first.code == 0, first.output[-4000:]
    assert first.summary["scenarios"]["passed"] == 10 and first.summary["change_count"] > 0
    _assert_migrated(lab, old_id, before)
    step5 = [c for r in first.summary["results"] if "guide_step_5" in r["tags"] for c in r["checks"]]
    served = [n for c in step5 for n in c["evidence"].get("served_while_server_stopped", [])]
    assert served and "fetched its SVID from the agent" in served[0], step5   # make before break: no gap
    step6 = [c for r in first.summary["results"] if "guide_step_6" in r["tags"] for c in r["checks"]]
    order = next(c["evidence"]["changes_in_order"] for c in step6 if "changes_in_order" in c["evidence"])
    made = next(i for i, c in enumerate(order) if c.startswith("created "))
    assert made < next(i for i, c in enumerate(order) if c.startswith("started spire-agent")), order
    assert "join_token" not in json.dumps(first.summary).replace("<redacted", "") or \
        old_id.rsplit("/", 1)[1] not in json.dumps(first.summary)
    second = lab.run_suite("-m", "migrate")
    assert second.code == 0 and second.summary["change_count"] == 0, second.output[-3000:]
    validate = lab.run_suite("-m", "validate")
    assert validate.code == 0 and validate.status("pre_check_1") == "not_applicable"


@pytest.mark.parametrize("crash_point", ["guide_step_4:server.conf written", "guide_step_8:entries created"])
def test_kill_9_mid_step_then_rerun_resumes(make_lab, crash_point):
    lab = make_lab()
    lab.up()
    old_id, before = _phase3_entries(lab)
    killed = lab.run_suite("-m", "migrate", env={KILL_AT: crash_point})
    assert killed.code == -9, f"the run should have been killed at {crash_point}: {killed.output[-2000:]}"
    rerun = lab.run_suite("-m", "migrate")
    assert rerun.code == 0, rerun.output[-4000:]
    _assert_migrated(lab, old_id, before)
    assert lab.run_suite("-m", "migrate").summary["change_count"] == 0
