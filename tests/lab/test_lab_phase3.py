"""The swtpm lab is a real Phase 3 node, and the pre-migration checklist proves it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab import core
from lab.devid_proof import prove_devid
from spire_migration.node import services
from spire_migration.node.runtimes import get_runtime
from spire_migration.node.tpm import devid_agent_id

pytestmark = pytest.mark.lab


def _exec(lab, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "exec", "--root", str(lab.root), "--", *cmd],
                          capture_output=True, text=True, timeout=60)


def test_lab_runs_real_spire_with_a_join_token_agent(lab):
    version = _exec(lab, "spire-server", "--version")
    assert (version.stdout + version.stderr).strip().startswith("1.15."), version
    agents = json.loads(_exec(lab, "spire-server", "agent", "list", "-output", "json").stdout)["agents"]
    assert [a["attestation_type"] for a in agents] == ["join_token"]
    assert agents[0]["id"]["path"].startswith("/spire/agent/join_token/")
    entries = json.loads(_exec(lab, "spire-server", "entry", "show", "-output", "json").stdout)["entries"]
    workload = [e for e in entries if e["spiffe_id"]["path"] == "/k8s-workload"]
    assert workload and workload[0]["parent_id"]["path"] == agents[0]["id"]["path"]
    assert sorted(f"{s['type']}:{s['value']}" for s in workload[0]["selectors"]) == [
        "docker:label:io.kubernetes.container.name:mtls-app", "docker:label:io.kubernetes.pod.namespace:default"]


def test_lab_configs_are_the_guides_phase3(lab):
    t = lab.target
    assert 'NodeAttestor "join_token"' in t.server.config.read_text()
    agent_conf = t.agent.config.read_text()
    assert 'NodeAttestor "join_token"' in agent_conf and 'WorkloadAttestor "docker"' in agent_conf


def test_workload_container_logs_verified(lab):
    rt = get_runtime(lab.target)
    logs = "\n".join(rt.logs(i) for i in rt.instances())
    assert "Successfully fetched SVIDs" in logs and "VERIFIED" in logs
    labels = rt.instances()[0].labels
    assert labels["io.kubernetes.container.name"] == "mtls-app"
    assert labels["io.kubernetes.pod.namespace"] == "default"


def test_pre_migration_checklist_passes_then_fails_when_the_agent_stops(lab):
    ok = lab.run_suite("-m", "validate")
    assert ok.code == 0, ok.output[-3000:]
    for i in range(1, 6):
        assert ok.status(f"pre_check_{i}") == "passed"
    t = lab.target
    services.stop_agent(t)
    try:
        broken = lab.run_suite("-m", "validate")
        assert broken.code == 1, broken.output[-3000:]
        assert broken.status("pre_check_1") == "failed"
        assert "SPIRE agent running and healthy" in broken.output and "no spire-agent process" in broken.output
        assert broken.status("pre_check_2") == "passed"   # the TPM checks do not depend on the agent
    finally:
        info = services.start_agent(t)   # the cached SVID (KeyManager disk) brings the same identity back
        services.wait_agent_ready(t, info)
    assert lab.run_suite("-m", "validate").code == 0


def test_devid_attests_a_throwaway_agent_to_the_lab_server(lab):
    t = lab.target
    server_conf = t.server.config.read_bytes()
    agent_id = prove_devid(t, lab.root / "devid-proof")
    assert agent_id == devid_agent_id(t.attestor.devid_cert, "example.org")
    assert agent_id.startswith("spiffe://example.org/spire/agent/tpm_devid/")
    # ... and the lab is back in Phase 3
    assert t.server.config.read_bytes() == server_conf
    agents = services.server_cli(t).agents()
    assert [a["attestation_type"] for a in agents] == ["join_token"]


def test_lab_down_leaves_nothing_running_or_mounted(make_lab):
    own = make_lab()
    own.up()
    assert core._lab_pids(core.Layout(own.root)), "the lab should run processes while up"
    own.down()
    root = own.root
    assert core._lab_pids(core.Layout(root)) == []
    mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
    assert not [m for m in mounts if m.startswith(str(root))]
    status = "\n".join(core.status(root))
    assert "running" not in status, status
