"""The migrate and rollback reports prove every step with its evidence, checked against the lab.

The Markdown report (``--report``) is read back section by section: every
guide step (1-10) and rollback step (1-4) has passed checks with evidence, and
the evidence is the lab's truth, computed here from the lab's own files and
processes (the DevID certificate's sha1, the EK certificate, the entries that
existed before, the pids that ran).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_migration.node import services
from spire_migration.node.spire import id_str

pytestmark = pytest.mark.lab


def _sections(text: str) -> dict[str, dict]:
    """``## <tag>: <title> — <status>`` sections, each with its checks and their evidence."""
    out: dict[str, dict] = {}
    current = check = key = None
    for line in text.splitlines():
        if m := re.match(r"## (\w+): .* — (\w+)$", line):
            current = out.setdefault(m.group(1), {"status": m.group(2), "checks": []})
            check = None
        elif current is not None and (m := re.match(r"- \*\*(.+)\*\*: (.+)$", line)):
            check, key = {"title": m.group(1), "status": m.group(2), "evidence": {}}, None
            current["checks"].append(check)
        elif check is not None and (m := re.match(r"    - (\w+): `(.*)`$", line)):
            value, key = m.group(2), None
            try:
                check["evidence"][m.group(1)] = json.loads(value)
            except ValueError:
                check["evidence"][m.group(1)] = value
        elif check is not None and (m := re.match(r"    - (\w+):$", line)):
            key = m.group(1)
            check["evidence"][key] = ""
        elif check is not None and key and line.startswith("      ") and "```" not in line:
            check["evidence"][key] += line[6:] + "\n"
        elif line.startswith("## "):
            current = check = None
    return out


def _evidence(sections: dict[str, dict], tag: str) -> dict:
    """All evidence of a section's checks, merged (later checks win on equal keys)."""
    merged: dict = {}
    for c in sections[tag]["checks"]:
        merged.update(c["evidence"])
    return merged


def _der_sha(path: Path, algo: str) -> str:
    data = path.read_bytes()
    cert = x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)
    return hashlib.new(algo, cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _assert_every_step_proven(sections: dict[str, dict], tags: list[str]) -> None:
    for tag in tags:
        assert tag in sections, f"no section for {tag}: {sorted(sections)}"
        s = sections[tag]
        assert s["status"] == "passed", (tag, s)
        assert s["checks"], f"{tag}: the section proves nothing (no check)"
        assert all(c["status"].startswith("passed") for c in s["checks"]), (tag, s["checks"])
        assert all(c["evidence"] for c in s["checks"]), f"{tag}: a check without evidence: {s['checks']}"


def test_the_migrate_and_rollback_reports_prove_every_step(lab, tmp_path):
    t = lab.target
    server = services.server_cli(t)
    old_id = services.agent_identity(t)
    old_token = old_id.rsplit("/", 1)[1]
    under_old = [e for e in server.entries() if id_str(e["parent_id"]) == old_id]
    agent_pid, server_pid = services.agent_proc(t).pid, services.server_proc(t).pid
    report = tmp_path / "migrate.md"

    run = lab.run_suite("-m", "migrate", "--report", str(report))
    assert run.code == 0, run.output[-4000:]
    text = report.read_text()
    assert old_token not in text, "the spent join token must be redacted in the report"
    sections = _sections(text)
    _assert_every_step_proven(sections, [f"guide_step_{n}" for n in range(1, 11)])

    devid_sha1 = _der_sha(t.attestor.devid_cert, "sha1")
    ek_sha256 = _der_sha(t.tpm.device.parent / "ekcerts" / "ek-rsa2048.crt", "sha256")
    new_id = f"spiffe://{t.trust_domain}/spire/agent/tpm_devid/{devid_sha1}"
    step = {n: _evidence(sections, f"guide_step_{n}") for n in range(1, 11)}
    assert step[1]["agent_before"].startswith(f"spiffe://{t.trust_domain}/spire/agent/join_token/<redacted:")
    assert step[2]["ek_cert_sha256"] == ek_sha256 and step[2]["devid_cert_sha1"] == devid_sha1
    assert step[3]["entries_of_old_agent"] == len(under_old)
    server_conf, agent_conf = (c["evidence"] for c in sections["guide_step_4"]["checks"][:2])
    assert '+    NodeAttestor "tpm_devid" {' in server_conf["diff"] and "join_token" in server_conf["node_attestors_now"]
    agent_diff = agent_conf["diff"]
    assert '-    NodeAttestor "join_token" {' in agent_diff and '+    NodeAttestor "tpm_devid" {' in agent_diff
    stopped = {int(p) for line in step[5]["stopped_this_run"] for p in re.findall(r"pid (\d+)", line)}
    assert stopped == {server_pid}, (stopped, server_pid)   # make before break: the server alone
    assert step[5]["agent_now"].startswith(f"pid {agent_pid}:"), step[5]["agent_now"]
    order = step[6]["changes_in_order"]
    made = next(i for i, c in enumerate(order) if c.startswith("created "))
    assert made < order.index(f"stop the Phase 3 spire-agent pid {agent_pid}"), order
    assert step[6]["agent"].startswith(f"pid {services.agent_proc(t).pid}:") and "-joinToken" not in step[6]["agent"]
    assert step[6]["agent_after"] == new_id
    assert step[7]["agent_id"] == step[7]["expected_agent_id"] == new_id
    assert step[7]["devid_cert_sha1"] == devid_sha1 and step[7]["ek_cert_sha256"] == ek_sha256
    assert step[7]["attestation_type"] == "tpm_devid"
    assert step[8]["entries_of_old_agent"] == step[8]["moved"] == len(under_old) > 0
    assert step[8]["agent_after"] == new_id and step[8]["still_listed"] is False
    assert {i["phase"] for i in step[9]["instances"]} == {4}
    assert any("VERIFIED" in line for line in step[10]["last_lines"])
    assert step[10]["agent_after"] == new_id

    again = tmp_path / "migrate-again.md"   # a re-run changes nothing and still proves every step
    run = lab.run_suite("-m", "migrate", "--report", str(again))
    assert run.code == 0 and run.summary["change_count"] == 0, run.output[-4000:]
    sections = _sections(again.read_text())
    _assert_every_step_proven(sections, [f"guide_step_{n}" for n in range(1, 11)])
    assert _evidence(sections, "guide_step_7")["agent_id"] == new_id
    assert _evidence(sections, "guide_step_8")["moved"] == len(under_old)

    report = tmp_path / "rollback.md"
    run = lab.run_suite("-m", "rollback", "--report", str(report))
    assert run.code == 0, run.output[-4000:]
    sections = _sections(report.read_text())
    _assert_every_step_proven(sections, [f"rollback_step_{n}" for n in range(1, 5)])
    rb = {n: _evidence(sections, f"rollback_step_{n}") for n in range(1, 5)}
    assert rb[1]["agent_id"] == new_id and rb[1]["agent_now"] is None
    assert all(r["sha256"] == r["backup_sha256"] for r in rb[2]["restored"].values())
    jt_agent = services.agent_identity(t)
    assert jt_agent != old_id and jt_agent.rsplit("/", 1)[1] not in report.read_text()
    assert rb[3]["agent_after"].startswith(f"spiffe://{t.trust_domain}/spire/agent/join_token/<redacted:")
    assert rb[3]["agent_after"] != rb[3]["agent_before_migration"]
    assert rb[3]["entries_exported_under_old_agent"] == len(under_old) and rb[3]["missing"] == []
    assert rb[3]["tpm_agent"] == new_id and new_id not in rb[3]["agents_listed"]
    assert rb[4]["migration_steps_left"] == [] and rb[4]["cycles"] == ["cycle-1"]
