"""Issue 5, rollback self-test: migrate, validate, rollback, validate, migrate, validate.

One lab of its own, the suite driven as a user drives it (subprocess pytest with
--target), real SPIRE 1.15.3, swtpm and dockerd. Entry contents are compared at
every comparable point with the node's agent ID (join_token, TPM, new
join_token, TPM again) renamed. Then the refusals: an altered or a missing
config backup stops the rollback before anything is stopped.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from spire_migration.node import services
from spire_migration.node.facade import Node, Phase
from spire_migration.node.spire import entry_content, id_str
from spire_migration.config.target import Target

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def content_set(entries: list[dict[str, Any]], agent_ids: set[str]) -> list[str]:
    """Entry contents (parents included) with the node's agent IDs renamed to ``<agent>``."""
    out = []
    for e in entries:
        c = entry_content(e)
        parent = id_str(e["parent_id"])
        c["parent_id"] = "<agent>" if parent in agent_ids else parent
        c["selectors"] = sorted("spiffe_id:<agent>" if s.startswith("spiffe_id:") and s.split(":", 1)[1] in agent_ids
                                else s for s in c["selectors"])
        out.append(json.dumps(c, sort_keys=True))
    return sorted(out)


def _snapshot(t: Target) -> tuple[str, list[str], Phase]:
    node = Node(t)
    ident = node.agent_id()
    return ident, content_set(node.server.entries(), {ident}), node.phase()


def test_rollback_cycle(make_lab):
    lab = make_lab()
    runs = []

    def suite(mark: str, *extra: str, ok: bool = True):
        t0 = time.monotonic()
        report = lab.root / f"report-{len(runs):02d}.md"
        run = lab.run_suite("-m", mark, "--report", str(report), *extra)
        runs.append((run, report))
        print(f"pytest -m {mark}: exit {run.code} in {time.monotonic() - t0:.1f}s, "
              f"{run.summary.get('scenarios')}, {run.summary.get('change_count')} change(s)")
        if ok:
            assert run.code == 0, run.output[-4000:]
        return run

    lab.up()
    t = lab.target
    id0, entries0, phase0 = _snapshot(t)
    assert phase0 is Phase.PHASE3 and "/join_token/" in id0

    suite("migrate")
    id1, entries1, phase1 = _snapshot(t)
    assert phase1 is Phase.PHASE4 and "/tpm_devid/" in id1
    assert entries1 == entries0, "entries after the migration differ from Phase 3 (agent renamed)"
    suite("validate")

    rb = suite("rollback")
    assert rb.summary["scenarios"]["passed"] == 4, rb.summary
    id2, entries2, phase2 = _snapshot(t)
    assert phase2 is Phase.PHASE3 and "/join_token/" in id2 and id2 != id0
    assert entries2 == entries0, "entries after the rollback differ from the original Phase 3"
    assert services.server_cli(t).agent(id1) is None, "the TPM agent was not evicted"
    val = suite("validate")
    assert val.summary["scenarios"]["passed"] >= 5 and val.summary["scenarios"]["failed"] == 0, val.summary

    # the new join token never reaches the journal, the summaries, the reports, the output
    token = id2.rsplit("/", 1)[-1]
    for path in t.journal_root.rglob("*"):
        if path.is_file() and "backups" not in path.parts:
            assert token not in path.read_text(errors="replace"), f"join token leaked into {path}"
    for run, report in runs:
        assert token not in run.output and token not in json.dumps(run.summary)
        assert token not in report.read_text(), f"join token leaked into {report}"

    again = suite("rollback")
    assert again.summary["change_count"] == 0, f"a second rollback changed things: {again.summary['changes']}"

    suite("migrate")
    id3, entries3, phase3 = _snapshot(t)
    assert phase3 is Phase.PHASE4 and id3 == id1, "the TPM agent came back with another ID"
    assert entries3 == entries0, "entries after the second migration differ"
    suite("validate")
    again = suite("migrate")
    assert again.summary["change_count"] == 0, again.summary["changes"]

    # refusals: nothing is stopped when a backup is altered or missing
    backups = t.journal_root / "backups"
    agent_pid = services.agent_proc(t).pid
    conf = backups / "agent.conf"
    original = conf.read_bytes()
    os.chmod(conf, 0o600)
    conf.write_bytes(original + b"# tampered\n")
    run = suite("rollback", ok=False)
    assert run.code != 0 and "backup agent.conf was altered" in run.output, run.output[-3000:]
    assert services.agent_proc(t).pid == agent_pid, "the agent was stopped despite the refusal"
    conf.write_bytes(original)
    (backups / "server.conf").rename(backups / "server.conf.moved")
    run = suite("rollback", ok=False)
    assert run.code != 0 and "backup server.conf is missing" in run.output, run.output[-3000:]
    assert services.agent_proc(t).pid == agent_pid
    (backups / "server.conf.moved").rename(backups / "server.conf")
    assert Node(t).phase() is Phase.PHASE4
