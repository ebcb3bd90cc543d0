"""`pytest -m validate` run as a user runs it, against one swtpm lab (issue 4).

One lab with two agent nodes for the whole module (brought up once, always
taken down): node-1 is validated in Phase 3, migrated, validated with every
report, broken in five ways (one at a time, restored after each), and audited
together with node-2 (still Phase 3) through two testinfra backends.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from lab import measure
from lab.layout import private_base
from spire_migration.node import services
from spire_migration.node import tpm
from spire_migration.config.hclconfig import HclConfig
from spire_migration.fileio import write_file
from spire_migration.node.spire import id_str, to_create_data


def _load_lab_helpers():
    """tests/lab/conftest.py's Lab and SuiteRun (conftest modules are not importable by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lab_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["_lab_conftest"] = module
    spec.loader.exec_module(module)
    return module.Lab, module.SuiteRun


Lab, SuiteRun = _load_lab_helpers()

pytestmark = [pytest.mark.lab]

POST = [f"post_check_{i}" for i in range(1, 11)]
HARDENING = [f"hardening_{i}" for i in range(1, 6)]
AUDIT = [f"audit_{i}" for i in range(1, 8)]
PCR = 16          # the debug PCR: resettable, so the break can be undone exactly
PCR_ENTRY = "spiffe://example.org/pcr-bound-demo"


@pytest.fixture(scope="module")
def vlab() -> Iterator[Lab]:
    root = Path(tempfile.mkdtemp(prefix="labv-", dir=private_base()))
    the_lab = Lab(root)
    try:
        t0 = time.monotonic()
        the_lab.up(agents=2)
        print(f"lab up (2 agents) in {time.monotonic() - t0:.1f}s")
        yield the_lab
    finally:
        the_lab.down()


def _validate(lab: Lab, *extra: str, name: str = "v") -> tuple[SuiteRun, Path, Path]:
    report, junit = lab.root / f"{name}.md", lab.root / f"{name}.xml"
    t0 = time.monotonic()
    run = lab.run_suite("-m", "validate", "--report", str(report), "--junitxml", str(junit), *extra,
                        env={"DOCKER_HOST": lab.target.workload.docker_host})  # testinfra's docker backend
    print(f"validate {name}: exit {run.code} in {time.monotonic() - t0:.1f}s")
    return run, report, junit


def _result(run: SuiteRun, tag: str, host: str | None = None) -> dict:
    found = [r for r in run.summary["results"] if tag in r["tags"] and (host is None or r.get("host") == host)]
    assert found, f"no scenario tagged {tag} (host {host}):\n{run.output[-2000:]}"
    return found[0]


def _message(result: dict) -> str:
    return "\n".join([result["reason"]] + [f"{c['found']} {c['remedy']}" for c in result["checks"]])


def _assert_only(run: SuiteRun, failing: str, needles: list[str], dependents: dict[str, str] | None = None) -> None:
    """``failing`` failed naming every needle; every other post/hardening/audit scenario passed,
    except ``dependents`` (tag -> text its message must contain: the root cause)."""
    dependents = dependents or {}
    res = _result(run, failing)
    assert res["status"] == "failed", f"{failing} should fail:\n{run.output[-3000:]}"
    text = _message(res)
    for needle in needles:
        assert needle in text, f"{failing}: {needle!r} not in its message:\n{text}"
    for tag in POST + HARDENING + AUDIT:
        if tag == failing:
            continue
        r = _result(run, tag)
        if tag in dependents and r["status"] == "failed":
            assert dependents[tag] in _message(r), f"{tag} fails without naming the cause:\n{_message(r)}"
            continue
        assert r["status"] in ("passed", "not_applicable"), f"{tag} is {r['status']}:\n{_message(r)}"
    assert run.code == 1, run.output[-2000:]


def _wait_workload(lab: Lab, timeout: float = 60, verified: bool = True) -> None:
    """Poll until the workload's `check` mode verifies again (after a restore), or fails (after a break)."""
    from spire_migration.node.facade import Node
    from spire_migration.checks.postmigration import workload_check

    deadline = time.monotonic() + timeout
    while True:
        result = workload_check(Node(lab.target))
        if bool(result.get("verified")) == verified:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"workload check did not become verified={verified} within {timeout}s: {result}")
        time.sleep(1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def test_phase3_node_runs_pre_checks_and_reports_phase4_items_not_applicable(vlab: Lab):
    run, report, _ = _validate(vlab, name="phase3")
    assert run.code == 0, run.output[-3000:]
    for tag in [f"pre_check_{i}" for i in range(1, 6)] + HARDENING:
        assert _result(run, tag)["status"] == "passed", _message(_result(run, tag))
    for tag in POST + ["audit_2"]:
        res = _result(run, tag)
        assert res["status"] == "not_applicable" and "Phase 3" in res["reason"], res
    assert "| post_check_1 | - | SPIRE Server running with TPM node attestor | not_applicable |" in report.read_text()


def test_after_migrate_validate_passes_with_evidence_and_reports(vlab: Lab):
    migrate = vlab.run_suite("-m", "migrate")
    assert migrate.code == 0, migrate.output[-3000:]
    # a PCR-bound registration (the guide's Option 2) and its recorded expectation
    t = vlab.target
    agent = services.agent_identity(t)
    value = tpm.pcr_read(t.tpm, "sha256", [PCR])[PCR]
    res = services.server_cli(t).create_entries([{
        "spiffe_id": PCR_ENTRY, "parent_id": agent,
        "selectors": [{"type": "tpm", "value": f"pcr:{PCR}:{value}"},
                      {"type": "docker", "value": "label:io.kubernetes.container.name:pcr-demo"}]}])
    assert not res.failed
    import subprocess
    rec = subprocess.run([sys.executable, "-m", "spire_migration.checks.pcrs", "record", "--target", str(vlab.target_path),
                          "--note", "lab baseline"], capture_output=True, text=True)
    assert rec.returncode == 0, rec.stderr

    cucumber = vlab.root / "v.json"
    t0 = time.monotonic()
    run, report, junit = _validate(vlab, "--cucumberjson", str(cucumber), name="migrated")
    wall = time.monotonic() - t0
    for tag in POST + HARDENING:
        r = _result(run, tag)
        assert r["status"] == "passed", f"{tag}: {_message(r)}"
    # audit: node-2 still attests by join_token: a warning, not a failure
    a1 = _result(run, "audit_1")
    assert a1["status"] == "passed" and a1["checks"][0]["warnings"], a1
    for tag in AUDIT:
        assert _result(run, tag)["status"] == "passed", _message(_result(run, tag))
    assert run.code == 0
    # evidence filled in: agent IDs, DevID and EK fingerprints, PCR values, entry counts
    evidence = {c["title"]: c["evidence"] for r in run.summary["results"] for c in r["checks"]}
    flat = json.dumps(evidence)
    devid = tpm.cert_sha1(t.attestor.devid_cert)
    assert f"/spire/agent/tpm_devid/{devid}" in flat and '"devid_sha1"' in flat
    assert '"ek_sha256"' in flat and f'"sha256:{PCR}"' in flat and '"entry_count"' in flat
    text = report.read_text()
    assert "| post_check_7 | - | TPM attestation verified with verify_tpm.sh | passed |" in text
    assert f"devid_sha1: `{devid}`" in text and "ek_sha256" in text and "join_token/<redacted" not in text.replace(
        "join_token/<redacted:", "")
    props = [p.get("name") for p in ET.parse(junit).iter("property")]
    assert any(p.endswith("| evidence") for p in props) and any(p.endswith("| expected") for p in props)
    features = json.loads(cucumber.read_text())
    assert {f["name"] for f in features} >= {"Post-migration validation checklist", "Security hardening"}
    print(f"validate on the migrated lab: {wall:.1f}s wall")


def test_stop_the_agent(vlab: Lab):
    t = vlab.target
    services.stop_agent(t)
    try:
        run, _, _ = _validate(vlab, name="break-agent")
        _assert_only(run, "post_check_2", ["no spire-agent process", "start the agent"],
                     {"post_check_5": "post_check_2", "post_check_6": "post_check_2",
                      "post_check_10": "post_check_2", "post_check_9": "post_check_2",
                      "post_check_8": "error"})
    finally:
        info = services.start_agent(t)
        services.wait_agent_ready(t, info)
        _wait_workload(vlab)


def test_join_token_attestor_back_in_agent_config(vlab: Lab):
    t = vlab.target
    original = t.agent.config.read_bytes()
    cfg = HclConfig.load(t.agent.config)
    write_file(t.agent.config, cfg.with_plugin("NodeAttestor", "join_token", "plugin_data {}").text, mode=0o644)
    try:
        run, _, _ = _validate(vlab, "--logs-since", _now(), name="break-config")
        _assert_only(run, "post_check_2", ["NodeAttestors ['join_token', 'tpm_devid']",
                                           "remove NodeAttestor \"join_token\""],
                     {"audit_2": "NodeAttestor \"join_token\""})
    finally:
        write_file(t.agent.config, original, mode=0o644)


def test_tpm_socket_world_writable(vlab: Lab):
    sock = Path(vlab.target.tpm.device)
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    os.chmod(sock, 0o666)
    try:
        run, _, _ = _validate(vlab, "--logs-since", _now(), name="break-socket")
        _assert_only(run, "hardening_1", [str(sock), "mode 0666", f"chmod 0600 {sock}"])
    finally:
        os.chmod(sock, mode)


def test_delete_the_workload_entry(vlab: Lab):
    t = vlab.target
    server = services.server_cli(t)
    since = _now()
    agent = services.agent_identity(t)
    entry = next(e for e in server.entries()     # node-1's entry (node-2 registers the same SPIFFE ID)
                 if id_str(e["spiffe_id"]) == t.workload.spiffe_id and id_str(e["parent_id"]) == agent)
    assert not server.delete_entries([entry["id"]]).failed
    try:
        _wait_workload(vlab, verified=False)   # the agent drops the entry at its next sync (about 5 s)
        run, _, _ = _validate(vlab, "--logs-since", since, name="break-entry")
        _assert_only(run, "post_check_4", ["no entry for", "entry create -parentID"],
                     {"post_check_5": "post_check_4", "post_check_6": "post_check_4",
                      "post_check_10": "post_check_4", "post_check_9": "post_check_4",
                      "post_check_8": "No identity issued"})
    finally:
        created = server.create_entries([to_create_data(entry, id_str(entry["parent_id"]))])
        assert not created.failed
        new_id = created.ok[0]["id"]
        deadline = time.monotonic() + 60      # until the agent has synced the new entry
        while f"entry={new_id}" not in t.agent.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"the agent did not sync entry {new_id}"
            time.sleep(0.5)
        _wait_workload(vlab)


def test_extend_a_pcr_used_by_a_pcr_bound_registration(vlab: Lab):
    t = vlab.target
    before = tpm.pcr_read(t.tpm, "sha256", [PCR])[PCR]
    measure.pcr_extend(t.tpm, PCR, b"simulated firmware update")
    after = tpm.pcr_read(t.tpm, "sha256", [PCR])[PCR]
    try:
        run, _, _ = _validate(vlab, "--logs-since", _now(), name="break-pcr")
        _assert_only(run, "hardening_3", [f"PCR sha256:{PCR}", f"recorded {before}", f"current {after}",
                                          "update procedure", "pcrs record"])
    finally:
        measure.pcr_reset(t.tpm, PCR)
        assert tpm.pcr_read(t.tpm, "sha256", [PCR])[PCR] == before


def test_all_restored_then_a_fleet_of_two_nodes_through_two_backends(vlab: Lab):
    """node-1 through testinfra's local backend, node-2 (still Phase 3) through its docker
    backend: a container in the lab's dockerd that bind-mounts node-2's directory read-only
    and shares the host's pid namespace, so `docker exec` reads node-2's files and its agent's
    /proc entry. One run, one report."""
    import docker

    t1 = vlab.target
    t2_path = vlab.root / "target-node-2.toml"
    node2 = vlab.root / "nodes" / "node-2"
    client = docker.DockerClient(base_url=t1.workload.docker_host)
    mounts = {str(node2): {"bind": str(node2), "mode": "ro"},
              str(vlab.root / "server" / "conf"): {"bind": str(vlab.root / "server" / "conf"), "mode": "ro"}}
    for spec in t1.workload.ro_mounts:
        host, inside = spec.split(":")[:2]
        mounts[host] = {"bind": inside, "mode": "ro"}
    box = client.containers.run(t1.workload.image, entrypoint=["/usr/bin/sleep", "infinity"], detach=True,
                                name="lab-node-2", pid_mode="host", volumes=mounts, network_mode="none",
                                labels={"io.spire-migration.fleet": "node-2"})
    try:
        spec = "docker://lab-node-2"
        run, report, junit = _validate(vlab, "--logs-since", _now(), "--hosts", f"local://,{spec}",
                                       "--host-target", f"{spec}={t2_path}", name="fleet")
        # everything restored: node-1 passes every post-migration and hardening check again
        for tag in POST + HARDENING:
            assert _result(run, tag, host=None if tag in POST else "local")["status"] == "passed", \
                _message(_result(run, tag))
        # node-2 through docker: Phase 3, hardening passes, TPM-only checks are not applicable there
        for tag in HARDENING + ["audit_3", "audit_4", "audit_5"]:
            r = _result(run, tag, host=spec)
            assert r["status"] == "passed", _message(r)
        assert _result(run, "audit_2", host=spec)["status"] == "not_applicable"      # Phase 3
        assert _result(run, "audit_6", host=spec)["status"] == "not_applicable"      # TPM read locally only
        h1 = _result(run, "hardening_1", host=spec)["checks"][0]["evidence"]
        assert h1["path"].startswith(str(node2)) and h1["host"] == spec
        text = report.read_text()
        assert f"| hardening_1 | {spec} |" in text and "| hardening_1 | local |" in text
        cases = [c.get("name") for c in ET.parse(junit).iter("testcase")]
        assert any(spec in (c or "") for c in cases)
    finally:
        box.remove(force=True)
