"""fleet/migrate.yml on a real fleet lab (`python -m lab up --fleet 3`): waves, a stop, a resume, a no-op.

One fleet for the module, its tests in order (each builds on the one before):

1. node-2's TPM is broken (its swtpm stopped) before its wave, waves [1, 1, "100%"]: node-1 (the
   canary, alone in wave 1) migrates and finishes before node-2 starts; node-2's wave stops and
   so does the playbook (no finalize, no audit); node-2 still serves Phase 3 (its agent attested
   by join_token, its workload VERIFIED); node-3 was not touched (agent.conf byte-identical, no
   journal). report.yml reports the stopped run.
2. The TPM repaired, the playbook again with the default waves [1, "25%", "100%"]: the fleet
   completes (node-1 unchanged, node-2 and node-3 migrated, in that order), finalize runs, the
   fleet audit passes in one report covering every node.
3. The playbook once more: ansible's recap says changed=0 for every host and every run summary
   0 changes.

Ansible reaches the hosts by SSH (the lab's inventory); the suite runs on each host through its
entry point, the make and break parts on the server host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from lab.layout import private_base
from spire_migration.node import services
from spire_migration.node.spire import id_str
from spire_migration.redact import redact

pytestmark = pytest.mark.lab
PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODES = ("node-1", "node-2", "node-3")
AGENT_CONF = "/opt/spire/conf/agent/agent.conf"
RECAP = re.compile(r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.M)


class Fleet:
    """The lab fleet and what the tests ran on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inventory = root / "fleet" / "inventory.ini"
        self.reports = root / "reports"
        self.times: dict[str, float] = {}
        import testinfra

        self.host = {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=str(self.inventory))
                     for name in ("server", *NODES)}

    def playbook(self, name: str = "migrate.yml", *extra: str, timeout: float = 1800) -> tuple[int, str]:
        t0 = time.monotonic()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(PROJECT / "fleet" / name),
                               "-e", f"spire_report_dir={self.reports}", *extra],
                              capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"})
        self.times[f"{name} {' '.join(extra)}".strip()] = round(time.monotonic() - t0, 1)
        out = proc.stdout + proc.stderr
        if log := os.environ.get("FLEET_TEST_LOG"):   # keep every playbook's output (debugging)
            with open(log, "a") as fh:
                fh.write(f"\n===== {name} {' '.join(extra)}: exit {proc.returncode}\n{out}")
        return proc.returncode, out

    def run_dir(self) -> Path:
        return self.reports / "runs" / (self.reports / "last-run").read_text().strip()

    def sh(self, name: str, command: str) -> str:
        out = self.host[name].run(command)
        assert out.rc == 0, f"{name}: {command}: {out.stderr}"
        return out.stdout

    def sha(self, name: str, path: str) -> str:
        return hashlib.sha256(self.host[name].run(f"cat {path}").stdout_bytes).hexdigest()


def recap(output: str) -> dict[str, dict[str, int]]:
    return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in RECAP.finditer(output.split("PLAY RECAP")[-1])}


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = Path(os.environ.get("FLEET_TEST_ROOT") or tempfile.mkdtemp(prefix="fleet-", dir=private_base()))
    t0 = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:   # testinfra's ansible backend runs ansible-inventory
        mp.setenv("PATH", f"{BIN}:{os.environ.get('PATH', '')}")
        yield from _fleet(root, t0)


def _fleet(root: Path, t0: float) -> Iterator[Fleet]:
    try:
        up = _lab("up", "--fleet", str(len(NODES)), "--root", str(root))
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        the_fleet = Fleet(root)
        the_fleet.times["lab up --fleet 3"] = round(time.monotonic() - t0, 1)
        yield the_fleet
        print(f"\nfleet test wall times (s): {json.dumps(the_fleet.times)}")
    finally:
        _lab("down", "--root", str(root), "--purge")


def _summaries(run: Path) -> dict[str, dict]:
    return {str(p.relative_to(run)): json.loads(p.read_text()) for p in run.glob("*/**/*.json")
            if p.name not in ("handoff.json", "start.json", "end.json")}


def _agent_kind(fleet: Fleet, node: str) -> str:
    """How the server lists the node's agent (its attestation type): the agent ID from the node's
    agent-data.json, looked up in ``agent list`` on the server host."""
    agent_id = services.agent_id_from_data(fleet.sh(node, "cat /opt/spire/data/agent/agent-data.json"))
    agents = json.loads(fleet.sh("server", "/opt/spire/bin/spire-server agent list -output json"))["agents"]
    kinds = [a["attestation_type"] for a in agents if id_str(a["id"]) == agent_id]
    assert len(kinds) == 1, f"{node}: agent {redact(str(agent_id))} listed {len(kinds)} times"
    return kinds[0]


def test_a_broken_tpm_stops_its_wave_and_the_playbook(fleet: Fleet) -> None:
    before = {n: fleet.sha(n, AGENT_CONF) for n in ("node-2", "node-3")}
    fleet.sh("node-2", "systemctl stop swtpm.service")
    assert fleet.host["node-2"].run("test -e /dev/tpmrm0").rc != 0
    broken_at = fleet.sh("node-2", "date -u '+%Y-%m-%d %H:%M:%S'").strip()

    code, out = fleet.playbook("migrate.yml", "-e", '{"spire_waves": [1, 1, "100%"]}')
    assert code == 2, out[-4000:]
    counts = recap(out)
    assert counts.get("node-2", {}).get("failed") == 1 and counts["node-1"]["failed"] == 0, out[-6000:]
    assert "node-3" not in counts, "a host of a later wave was reached"
    assert "NO MORE HOSTS LEFT" in out and "finalize on" not in out and "fleet audit" not in out
    assert "wave 2/3 · agent-prepare on the node" in out and "fatal: [node-2]" in out

    run = fleet.run_dir()
    plan = json.loads((run / "waves.json").read_text())["waves"]
    assert plan == [["node-1"], ["node-2"], ["node-3"]]
    n1_end = json.loads((run / "nodes/node-1/end.json").read_text())["t"]
    n2_start = json.loads((run / "nodes/node-2/start.json").read_text())["t"]
    assert n1_end < n2_start, "the canary had not finished when wave 2 started"
    assert not (run / "nodes/node-3/start.json").exists()

    # node-2 still serves Phase 3: attested by join_token, its workload VERIFIED after the stop
    assert re.search(r'NodeAttestor\s+"join_token"', fleet.sh("node-2", f"cat {AGENT_CONF}"))
    assert fleet.sha("node-2", AGENT_CONF) == before["node-2"]
    assert _agent_kind(fleet, "node-2") == "join_token"
    assert fleet.host["node-2"].run("systemctl is-active spire-agent.service").stdout.strip() == "active"
    log = fleet.sh("node-2", f"journalctl -u mtls-app.service --no-pager -o cat --since '{broken_at}'")
    assert "VERIFIED" in log
    # node-3 untouched
    assert fleet.sha("node-3", AGENT_CONF) == before["node-3"]
    assert fleet.host["node-3"].run("test -e /var/lib/spire-migration/node-3/journal.json").rc != 0
    assert _agent_kind(fleet, "node-3") == "join_token"

    code, out = fleet.playbook("report.yml")
    assert code == 0, out[-3000:]
    rows = {r["node"]: r for r in json.loads((run / "fleet-report.json").read_text())["nodes"]}
    assert rows["node-1"]["result"] == "migrated" and rows["node-1"]["wave"] == 1
    assert rows["node-2"]["result"].startswith("failed at agent-prepare")
    assert rows["node-3"]["result"] == "not started"
    assert "join_token/<redacted:" in rows["node-1"]["agent_before"]
    assert "/tpm_devid/" in rows["node-1"]["agent_after"]


def test_the_repaired_fleet_completes_and_its_audit_passes_in_one_report(fleet: Fleet) -> None:
    fleet.sh("node-2", "systemctl start swtpm.service")
    fleet.sh("node-2", "test -S /dev/tpmrm0")
    code, out = fleet.playbook("migrate.yml")
    assert code == 0, out[-6000:]
    assert all(c["failed"] == 0 for c in recap(out).values()), recap(out)
    run = fleet.run_dir()
    report = json.loads((run / "fleet-report.json").read_text())
    rows = {r["node"]: r for r in report["nodes"]}
    assert rows["node-1"]["result"] == "unchanged (already migrated)"
    assert rows["node-2"]["result"] == rows["node-3"]["result"] == "migrated"
    assert all(r["phase_after"] == "Phase 4 (TPM)" for r in rows.values()), rows
    t = {n: json.loads((run / f"nodes/{n}/{f}.json").read_text())["t"] for n in NODES for f in ("start",)}
    ends = {n: json.loads((run / f"nodes/{n}/end.json").read_text())["t"] for n in NODES}
    assert ends["node-1"] < t["node-2"] and ends["node-2"] < t["node-3"]
    assert "after the waves · finalize on server" in out
    for n in NODES:
        assert _agent_kind(fleet, n) == "tpm_devid"
        assert not re.search(r'NodeAttestor\s+"join_token"', fleet.sh(n, f"cat {AGENT_CONF}"))

    audit = json.loads((run / "audit.json").read_text())
    assert audit["exit_status"] == 0 and audit["scenarios"]["failed"] == 0, audit["scenarios"]
    per_host = {}
    for r in audit["results"]:
        if r["host"]:
            per_host.setdefault(r["host"], {}).setdefault(r["status"], []).append(r["scenario"])
        else:   # the node-wide checklists: not applicable on the controller, with the reason
            assert r["status"] == "not_applicable" and "names no local host" in r["reason"], r
    assert sorted(per_host) == [f"ansible://{n}" for n in NODES]
    for host, by_status in per_host.items():
        assert len(by_status.get("passed", [])) >= 8, (host, by_status)
        assert not by_status.get("failed"), (host, by_status)
    md = (run / "audit.md").read_text()
    assert all(f"ansible://{n}" in md for n in NODES)
    assert not re.search(r"join_token/(?!<redacted)", md + json.dumps(report))


def test_a_second_run_changes_nothing(fleet: Fleet) -> None:
    code, out = fleet.playbook("migrate.yml", "-e", "spire_audit=false")
    assert code == 0, out[-6000:]
    counts = recap(out)
    assert set(counts) >= {"server", *NODES}
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts
    run = fleet.run_dir()
    summaries = _summaries(run)
    assert len([k for k in summaries if k.startswith("nodes/")]) == 5 * len(NODES), sorted(summaries)
    assert {k: s["change_count"] for k, s in summaries.items() if s["change_count"]} == {}
    report = json.loads((run / "fleet-report.json").read_text())
    assert report["totals"]["changes"] == 0 and report["totals"]["unchanged"] == len(NODES)
