"""The fleet parts on one real lab host: server part, then the agent part with make before break.

The lab's server and agent run side by side here, so each part is run as the fleet runs it
(`spire-migration migrate --part P`), with two targets: the server host's (node "server")
and the agent node's (node-1). Each part's summary says what it changed; a second pass of
every part changes nothing. A handoff whose new agent ID its DevID certificate does not give
is refused before anything is created.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from spire_migration.config import attestor
from spire_migration.node import services
from spire_migration.node.spire import id_str
from spire_migration.node.spiffe_ids import is_join_token_agent
from spire_migration.procedures.parts import handoff_path

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PARTS = ("server", "agent-prepare", "make", "agent-switch", "break", "agent-finish")


def _run(lab, part: str, target: Path, handoff: Path | None = None,
         command: str = "migrate", *extra: str) -> tuple[int, str, dict]:
    summary = Path(tempfile.mkstemp(prefix="summary-", suffix=".json", dir=lab.root)[1])
    cmd = [sys.executable, "-m", "spire_migration.cli", command, "--part", part, "--target", str(target),
           "--summary", str(summary), "-q", "--progress", "off"]
    if handoff is not None:
        cmd += ["--handoff", str(handoff)]
    cmd += list(extra)
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    text = summary.read_text() if summary.stat().st_size else "{}"
    summary.unlink()
    return proc.returncode, proc.stdout + proc.stderr, json.loads(text)


def _changes(summary: dict) -> list[str]:
    assert "changes" in summary, f"no summary: {summary}"
    return summary["changes"]


@pytest.fixture(scope="module")
def hosts(lab):
    """(server host's target path, agent node's target path) of the one lab."""
    agent_target = lab.target_path
    server_target = lab.root / "target-server-host.toml"
    text = agent_target.read_text()
    server_target.write_text(text.replace('node = "node-1"', 'node = "server"'))
    assert 'node = "server"' in server_target.read_text()
    return server_target, agent_target


def test_the_parts_migrate_make_before_break_and_a_second_pass_changes_nothing(lab, hosts):
    server_target, agent_target = hosts
    t = lab.target
    server = services.server_cli(t)
    old = services.agent_identity(t)
    new = attestor.expected_agent_id(t)
    assert is_join_token_agent(old)
    old_entries = server.entries(parentID=old)
    assert old_entries, "the lab's workload entry is under the join_token agent"
    agent_pid = services.agent_proc(t).pid

    code, out, _ = _run(lab, "server", server_target)
    assert code == 0, out[-3000:]
    assert services.agent_proc(t).pid == agent_pid, "the server part restarted the agent"

    code, out, _ = _run(lab, "agent-prepare", agent_target)
    assert code == 0, out[-3000:]
    handoff = handoff_path(t)
    text = handoff.read_text()
    assert old.rsplit("/", 1)[1] not in text, "the join token left the node in the handoff"
    assert json.loads(text)["new_agent"] == new
    assert services.agent_proc(t).pid == agent_pid, "prepare restarted the agent"

    forged = lab.root / "forged-handoff.json"
    forged.write_text(text.replace(new, new[:-4] + "beef"))
    code, out, _ = _run(lab, "make", server_target, forged)
    assert code != 0 and "does not give" in out, out[-3000:]
    assert not server.entries(parentID=new[:-4] + "beef") and not server.entries(parentID=new)

    code, out, _ = _run(lab, "make", server_target, handoff)
    assert code == 0, out[-3000:]
    made = server.entries(parentID=new)
    assert sorted(id_str(e["spiffe_id"]) for e in made) == sorted(id_str(e["spiffe_id"]) for e in old_entries)
    assert len(server.entries(parentID=old)) == len(old_entries), "make deleted the old entries"
    assert services.agent_proc(t).pid == agent_pid, "make restarted the agent"

    code, out, _ = _run(lab, "agent-switch", agent_target)
    assert code == 0, out[-3000:]
    assert services.agent_identity(t) == new

    code, out, _ = _run(lab, "break", server_target, handoff)
    assert code == 0, out[-3000:]
    assert server.agent(old) is None and not server.entries(parentID=old)

    code, out, _ = _run(lab, "agent-finish", agent_target)
    assert code == 0, out[-3000:]

    for part in PARTS:   # idempotent: every part again, nothing changes
        code, out, summary = _run(lab, part, server_target if part in ("server", "make", "break") else agent_target,
                                  handoff if part in ("make", "break") else None)
        assert code == 0, f"{part}: {out[-3000:]}"
        assert not _changes(summary), f"{part} changed {_changes(summary)} on a migrated fleet"
