"""The fleet report from a run folder (spire_migration/records/fleet_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

from spire_migration.records import fleet_report

TOKEN_ID = "spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"
TPM_ID = "spiffe://example.org/spire/agent/tpm_devid/abc"


def _put(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _summary(exit_status: int = 0, changes: int = 1, phase: str = "", **facts: str) -> dict:
    return {"exit_status": exit_status, "change_count": changes, "changes": ["x"] * changes,
            "duration_s": 1.5, "phase": phase or None, "facts": facts}


def _migrated(run: Path, node: str, t0: float, changes: int = 1) -> None:
    d = run / "nodes" / node
    _put(d / "agent-prepare.json", _summary(changes=changes, phase_before="Phase 3 (join_token)",
                                            agent_before=TOKEN_ID))
    for part in ("make", "agent-switch", "break"):
        _put(d / f"{part}.json", _summary(changes=changes, agent_after=TPM_ID))
    _put(d / "agent-finish.json", _summary(changes=changes, phase="Phase 4 (TPM)"))
    _put(d / "handoff.json", {"node": node, "old_agent_id": TOKEN_ID, "new_agent_id": TPM_ID})
    _put(d / "start.json", {"t": t0})
    _put(d / "end.json", {"t": t0 + 4.0})


def test_a_stopped_run(tmp_path: Path) -> None:
    _put(tmp_path / "waves.json", {"run": "R1", "waves": [["node-1"], ["node-2"], ["node-3"]]})
    _put(tmp_path / "server" / "server.json", _summary(changes=2))
    _migrated(tmp_path, "node-1", 100.0)
    _put(tmp_path / "nodes" / "node-2" / "agent-prepare.json", _summary(exit_status=1, changes=0))
    _put(tmp_path / "nodes" / "node-2" / "start.json", {"t": 110.0})
    report = fleet_report.write(tmp_path)
    rows = {r["node"]: r for r in report["nodes"]}
    assert [r["wave"] for r in report["nodes"]] == [1, 2, 3]
    assert rows["node-1"]["result"] == "migrated" and rows["node-1"]["duration_s"] == 4.0
    assert rows["node-1"]["phase_before"].startswith("Phase 3") and rows["node-1"]["phase_after"].startswith("Phase 4")
    assert rows["node-1"]["agent_after"] == TPM_ID
    assert rows["node-2"]["result"] == "failed at agent-prepare (exit 1)"
    assert rows["node-3"]["result"] == "not started" and rows["node-3"]["parts"] == {}
    assert report["totals"] == {"nodes": 3, "migrated": 1, "unchanged": 0, "failed": 1, "stopped": 0,
                                "not_started": 1, "changes": 7, "wall_s": 10.0}
    for name in ("fleet-report.md", "fleet-report.json"):
        text = (tmp_path / name).read_text()
        assert "0d1f5c2e" not in text and "join_token/<redacted:" in text
    md = (tmp_path / "fleet-report.md").read_text()
    assert "| 2 | node-2 |" in md and "failed at agent-prepare" in md


def test_a_second_run_is_unchanged(tmp_path: Path) -> None:
    _put(tmp_path / "waves.json", {"run": "R2", "waves": [["node-1"]]})
    _migrated(tmp_path, "node-1", 5.0, changes=0)
    report = fleet_report.build(tmp_path)
    assert report["nodes"][0]["result"] == "unchanged (already migrated)"
    assert report["totals"]["changes"] == 0


def test_the_cli_refuses_a_folder_that_is_no_run(tmp_path: Path, capsys) -> None:
    assert fleet_report.main([str(tmp_path)]) == 4
    assert "waves.json not found" in capsys.readouterr().err
