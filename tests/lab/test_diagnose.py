"""Issue 5, the guide's Common Migration Issues: each fault injected for real, then diagnosed.

A migrated (Phase 4) lab; for each fault: inject it, run ``pytest -m diagnose -k
issue_N`` as a user would, read the cause it named from the run summary, put
the node back. Issue 1 has four causes, each injected on its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from lab import swtpm
from lab.layout import Layout
from lab import measure
from spire_migration.checks import pcrs
from spire_migration.node import services
from spire_migration.config.hclconfig import HclConfig
from spire_migration.records.journal import Journal
from spire_migration.retry import poll
from spire_migration.config.target import Target

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _diagnose(lab, target: Path, issue: int, fault: bool = True) -> dict:
    t0 = time.monotonic()
    run = lab.run_suite("-m", "diagnose", "-k", f"issue_{issue}", f"--target={target}")
    found = run.summary.get("facts", {}).get(f"issue_{issue}", {})
    print(f"issue {issue}: exit {run.code} in {time.monotonic() - t0:.1f}s, cause {found.get('cause')}: "
          f"{found.get('summary', '')[:160]}")
    assert (run.code != 0) == fault, run.output[-3000:]
    return found


def _restart_agent(t: Target, join_token: str | None = None, wait: bool = False) -> None:
    services.stop_agent(t)
    services.forget_agent_svid(t)
    info = services.start_agent(t, join_token=join_token)
    if wait:
        services.wait_agent_ready(t, info)


def _restart_server(t: Target) -> None:
    services.stop_server(t)
    services.start_server(t)


def _agent_failed_or_settled(t: Target) -> None:
    """Give the faulty agent its attestation attempt: until it exits or logs an error (deadline)."""
    def settled():
        log = t.agent.log.read_text(errors="replace")[-4000:]
        return services.agent_proc(t) is None or "level=error" in log
    poll(settled, timeout=20, what="the agent's attestation attempt", raise_on_timeout=False)


def test_common_issues_diagnosed(make_lab):
    lab = make_lab()
    lab.up()
    run = lab.run_suite("-m", "migrate")
    assert run.code == 0, run.output[-3000:]
    t = lab.target
    diag = lab.root / "target-diag.toml"   # the same node, shorter waits
    diag.write_text(lab.target_path.read_text().replace("start_timeout_s = 60.0", "start_timeout_s = 10.0"))
    for n in (1, 2, 3, 4):
        assert _diagnose(lab, diag, n, fault=False)["cause"] == "none"

    # Issue 1a: wrong tpm_device_path
    agent_conf = t.agent.config.read_bytes()
    t.agent.config.write_text(agent_conf.decode().replace(f'"{t.tpm.device}"', f'"{t.tpm.device}.nope"'))
    _restart_agent(t)
    _agent_failed_or_settled(t)
    assert _diagnose(lab, diag, 1)["cause"] == "wrong_tpm_device_path"
    t.agent.config.write_bytes(agent_conf)
    _restart_agent(t, wait=True)

    # Issue 1b: TPM attestor missing on the server
    server_conf = t.server.config.read_bytes()
    t.server.config.write_text(HclConfig.load(t.server.config).without_plugin("NodeAttestor", "tpm_devid").text)
    _restart_server(t)
    _restart_agent(t)
    _agent_failed_or_settled(t)
    assert _diagnose(lab, diag, 1)["cause"] == "server_attestor_missing"
    t.server.config.write_bytes(server_conf)
    _restart_server(t)
    _restart_agent(t, wait=True)

    # Issue 1c: EK CA mismatch (the server trusts the wrong endorsement CA)
    ek_ca = t.attestor.endorsement_ca.read_bytes()
    t.attestor.endorsement_ca.write_bytes(t.attestor.devid_ca.read_bytes())
    _restart_server(t)
    _restart_agent(t)
    _agent_failed_or_settled(t)
    found = _diagnose(lab, diag, 1)
    assert found["cause"] == "ca_mismatch" and "EK CA mismatch" in found["summary"], found
    t.attestor.endorsement_ca.write_bytes(ek_ca)
    _restart_server(t)
    _restart_agent(t, wait=True)

    # Issue 1d: a join token still passed to the TPM-configured agent (the guide's Step 6)
    token = services.server_cli(t).token_generate()
    _restart_agent(t, join_token=token, wait=True)
    jt_agent = services.agent_identity(t)
    found = _diagnose(lab, diag, 1)
    assert found["cause"] == "join_token_passed", found
    services.stop_agent(t)
    services.server_cli(t).evict(jt_agent)
    _restart_agent(t, wait=True)
    assert _diagnose(lab, diag, 1, fault=False)["cause"] == "none"

    # Issue 2: the parent agent has not attested (stopped and evicted): the diagnosis waits, then lists
    tpm_id = services.agent_identity(t)
    services.stop_agent(t)
    services.server_cli(t).evict(tpm_id)
    found = _diagnose(lab, diag, 2)
    assert found["cause"] == "agent_not_attested" and found["waited_s"] >= 9, found
    assert not any("tpm_devid" in a for a in found["agents"]), found
    _restart_agent(t)   # attests while the diagnosis waits
    found = _diagnose(lab, diag, 2, fault=False)
    assert found["cause"] == "none", found
    poll(lambda: services.agent_cli(t).healthy(), timeout=30, what="the agent to be healthy again")

    # Issue 3: PCR values change after a "reboot" (swtpm restart resets PCRs) and a new measurement
    measure.pcr_extend(t.tpm, 16, b"measured boot, version 1")
    journal = Journal(t.journal_root)
    pcrs.record_expectations(t, journal, [16], bank="sha256", note="diagnose")
    value = pcrs.recorded(journal)["sha256"][16]
    res = services.server_cli(t).create_entries([{
        "spiffe_id": "spiffe://example.org/pcr-bound-workload", "parent_id": tpm_id,
        "selectors": [{"type": "tpm", "value": f"pcr:16:{value}"},
                      {"type": "docker", "value": "label:io.kubernetes.container.name:mtls-app"}]}])
    assert not res.failed, res.failed
    assert _diagnose(lab, diag, 3, fault=False)["cause"] == "none"
    tpm_dir = Layout(lab.root).node(t.node).tpm_dir
    swtpm.stop(tpm_dir)
    swtpm.start(tpm_dir)
    measure.pcr_extend(t.tpm, 16, b"measured boot, version 2")
    found = _diagnose(lab, diag, 3)
    assert found["cause"] == "pcr_changed" and len(found["changed"]) == 2, found
    assert {c["expected"] for c in found["changed"]} == {value}

    # Issue 4: the agent is slowed down (SIGSTOP/SIGCONT) while the diagnosis fetches SVIDs
    pid = services.agent_proc(t).pid
    stop = threading.Event()

    def throttle():
        try:
            while not stop.is_set():
                os.kill(pid, signal.SIGSTOP)
                stop.wait(2.0)
                os.kill(pid, signal.SIGCONT)
                stop.wait(0.1)
        finally:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=throttle, daemon=True)
    thread.start()
    try:
        found = _diagnose(lab, diag, 4)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert found["cause"] == "slow_fetch" and found["median_ms"] > found["threshold_ms"], found
    assert _diagnose(lab, diag, 4, fault=False)["cause"] == "none"
