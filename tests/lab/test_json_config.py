"""The JSON form of SPIRE's configs (the helm chart's): planned, edited, proven and
migrated like the HCL form, against the lab's real SPIRE (issue 9 point 9)."""

from __future__ import annotations

import json
import subprocess

import pytest

from spire_migration.node import services
from spire_migration.config.hclconfig import HclConfig, load_config

pytestmark = pytest.mark.lab


def test_json_configs_migrate_to_tpm_devid(lab):
    t = lab.target
    docs = {}
    for path in (t.server.config, t.agent.config):
        docs[path] = HclConfig.load(path).data
        path.write_text(json.dumps(docs[path], indent=2) + "\n")   # Go's toPrettyJson style
    # Phase 3 runs from the JSON form too: SPIRE's own validate accepts both files.
    for binary, path in ((t.server_bin, t.server.config), (t.agent_bin, t.agent.config)):
        proc = subprocess.run([str(binary), "validate", "-config", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    plan = lab.run_suite("-m", "migrate", "--plan")
    assert plan.code == 0, plan.output[-3000:]
    assert '+      "tpm_devid": {' in plan.output, plan.output[-3000:]   # the JSON diff is shown

    run = lab.run_suite("-m", "migrate")
    assert run.code == 0, run.output[-4000:]
    ident = services.agent_identity(t) or ""
    assert ident.startswith(f"spiffe://{t.trust_domain}/spire/agent/tpm_devid/")
    assert services.server_cli(t).agent(ident)["attestation_type"] == "tpm_devid"

    server, agent = load_config(t.server.config), load_config(t.agent.config)
    assert server.format == agent.format == "json"
    assert list(server.plugins("NodeAttestor")) == ["join_token", "tpm_devid"]
    assert list(agent.plugins("NodeAttestor")) == ["tpm_devid"]
    assert "join_token" not in agent.section("agent")
    for path, before in docs.items():
        after = json.loads(path.read_text())
        assert list(after) == list(before), f"{path.name}: top-level key order changed"
        assert list(after["plugins"]) == list(before["plugins"]), f"{path.name}: plugin kinds reordered"
        for kind in ("DataStore", "KeyManager", "WorkloadAttestor"):
            assert after["plugins"].get(kind) == before["plugins"].get(kind), f"{path.name}: {kind} changed"
