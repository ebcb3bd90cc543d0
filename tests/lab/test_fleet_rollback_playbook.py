"""fleet/rollback.yml for real: `lab up --fleet 2` (hosts with systemd as PID 1, reached by SSH), node-1
migrated through the suite's fleet parts inside its host and the server host, then rolled back by the
playbook (-e node=node-1): the token travels server host -> controller (no_log) -> node as a 0600 file.

Proven: node-1's agent is a join_token agent again and its workload VERIFIED; its TPM agent is evicted
with no entry left under it; node-2 was not touched (same agent, still serving); the token is in no
output of the playbook, no /proc/*/cmdline or environ sampled on this machine during the run (the hosts'
processes included), no file under the suite's journals, /etc, /tmp, /run or /var/log of either host but SPIRE's own (its
logs, where it appears only inside the agent ID, and its datastore); a second playbook run reports changed=0.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from lab.fleet.docker import Docker
from lab.fleet.layout import FleetLayout
from lab.layout import Layout, private_base
from spire_migration.node import services
from test_secrets import ProcSampler

pytestmark = [pytest.mark.lab, pytest.mark.slow]
PROJECT = Path(__file__).resolve().parents[2]
SUITE = str(Path(sys.executable).parent / "spire-migration")
TARGET = "/etc/spire-migration/target.toml"
SOCKET = "/tmp/spire-server/private/api.sock"


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = json.loads(FleetLayout(root).hosts_json.read_text())
        self.docker = Docker(Layout(root).docker_host)
        self.containers = {h["name"]: h["container"] for h in self.state["hosts"]}

    def sh(self, host: str, cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.docker.exec(self.containers[host], "sh", "-c", cmd, stdin=stdin, check=False, timeout=300)

    def part(self, host: str, part: str, handoff: str = "") -> None:
        res = self.sh(host, f"{SUITE} migrate --part {part} --target {TARGET} -q --progress off"
                      + (f" --handoff {handoff}" if handoff else ""))
        assert res.returncode == 0, f"{part} on {host}: {(res.stdout + res.stderr)[-3000:]}"

    def agent_id(self, node: str) -> str:
        return services.agent_id_from_data(self.sh(node, "cat /opt/spire/data/agent/agent-data.json").stdout) or ""

    def server(self, *args: str) -> dict:
        res = self.sh("server", f"/opt/spire/bin/spire-server {' '.join(args)} -socketPath {SOCKET} -output json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def playbook(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                               str(FleetLayout(self.root).inventory), str(PROJECT / "fleet" / "rollback.yml"), *extra],
                              capture_output=True, text=True, timeout=900, cwd=self.root)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    pytest.importorskip("ansible", reason="fleet/rollback.yml needs ansible-core (the fleet extra)")
    root = Path(tempfile.mkdtemp(prefix="rb-fleet-", dir=private_base()))
    lab = [sys.executable, "-m", "lab"]
    try:
        up = subprocess.run(lab + ["up", "--fleet", "2", "--root", str(root)], cwd=PROJECT, capture_output=True,
                            text=True, timeout=900)
        assert up.returncode == 0, up.stderr[-3000:]
        yield Fleet(root)
    finally:
        subprocess.run(lab + ["down", "--root", str(root), "--purge"], cwd=PROJECT, capture_output=True, timeout=600)


def _recap_changed(output: str, node: str) -> int:
    m = re.search(rf"^{re.escape(node)}\s+: ok=\d+\s+changed=(\d+)", output, re.M)
    assert m, output[-2000:]
    return int(m.group(1))


def test_rollback_playbook_returns_one_node_to_phase3_and_the_token_shows_nowhere(fleet):
    node2_before = fleet.agent_id("node-2")
    handoff = "/var/lib/spire-migration/node-1/handoff.json"
    fleet.part("server", "server")
    fleet.part("node-1", "agent-prepare")
    text = fleet.sh("node-1", f"cat {handoff}").stdout
    assert fleet.sh("server", f"install -d -m 0700 /var/lib/spire-migration/.in && cat > /var/lib/spire-migration/"
                    f".in/node-1.json", stdin=text).returncode == 0
    for host, part, h in (("server", "make", "/var/lib/spire-migration/.in/node-1.json"), ("node-1", "agent-switch", ""),
                          ("server", "break", "/var/lib/spire-migration/.in/node-1.json"), ("node-1", "agent-finish", "")):
        fleet.part(host, part, h)
    tpm_agent = fleet.agent_id("node-1")
    assert "/spire/agent/tpm_devid/" in tpm_agent

    sampler = ProcSampler()
    sampler.start()
    try:
        run = fleet.playbook("-e", "node=node-1", "-e", f"spire_suite={SUITE}")
    finally:
        sampler.stop()
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert sampler.rounds > 10

    jt_agent = fleet.agent_id("node-1")
    assert "/spire/agent/join_token/" in jt_agent, jt_agent
    token = jt_agent.rsplit("/", 1)[1]
    agents = {a["id"]["path"]: a["attestation_type"] for a in fleet.server("agent", "list").get("agents") or []}
    assert agents.get(jt_agent.split("example.org", 1)[1]) == "join_token"
    assert tpm_agent.split("example.org", 1)[1] not in agents, "the TPM agent was not evicted"
    assert not fleet.server("entry", "show", "-parentID", tpm_agent).get("entries"), "entries left under the TPM agent"
    check = fleet.sh("node-1", "journalctl -u mtls-app.service --no-pager -o cat --since '-60s'").stdout
    assert "VERIFIED" in check, check[-1000:]
    assert fleet.agent_id("node-2") == node2_before, "node-2 was touched"

    assert token not in run.stdout + run.stderr, "the token is in the playbook's output"
    assert not [b for b in sampler.seen if token.encode() in b], "the token was in the process table"
    for host in ("server", "node-1"):
        found = fleet.sh(host, f"grep -rl '{token}' /var/lib/spire-migration /etc /tmp /run /opt/spire /var/log "
                         "2>/dev/null").stdout.split()
        # SPIRE's own: its journal (or log file) and datastore name the agent by its ID, which holds the
        # (then spent) token; under systemd agent.conf's join_token_file keeps the spent token (SPIRE reads
        # it at every start: node/units.py)
        spire_own = ("/opt/spire/server.log", "/opt/spire/agent.log", "/opt/spire/conf/agent/join-token",
                     "/opt/spire/data/server/datastore", "/run/log/journal/", "/var/log/journal/")
        assert not [f for f in found if not f.startswith(spire_own)], f"{host}: {found}"
        logs = fleet.sh(host, "journalctl --no-pager; cat /opt/spire/*.log 2>/dev/null").stdout
        assert token not in logs.replace(f"spire/agent/join_token/{token}", "spire/agent/join_token/<id>"), \
            f"{host}: SPIRE's logs hold the token outside the agent ID"

    again = fleet.playbook("-e", "node=node-1", "-e", f"spire_suite={SUITE}")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert _recap_changed(again.stdout, "node-1") == 0, again.stdout[-3000:]
    assert fleet.agent_id("node-1") == jt_agent
