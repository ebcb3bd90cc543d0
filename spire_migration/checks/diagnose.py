"""The guide's Common Migration Issues, diagnosed on the node. Read-only.

Each function reads the node (agent and server logs, both configs, the agent
list, the TPM, the workload) and returns a :class:`Diagnosis` that names the
cause, the evidence, and the guide's resolution as it applies to real SPIRE.

The guide's Issue 1 advice "Clear TPM if previously used: ``sudo tpm2_clear``"
destroys every key under the owner hierarchy, the DevID included: the suite
never runs it, and every Issue 1 diagnosis says so.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spire_migration.config import attestor as att
from spire_migration.checks import pcrs
from spire_migration.node import services
from spire_migration.node import tpm
from spire_migration.errors import MigrationError
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.redact import redact
from spire_migration.node.spiffe_ids import TPM_ATTESTORS, is_join_token_agent, is_tpm_agent
from spire_migration.node.spire import id_str
from spire_migration.config.target import TPMSpec

TPM2_CLEAR_WARNING = ("the guide's `sudo tpm2_clear` destroys every key under the owner hierarchy, "
                      "the DevID included (SPIRE's tpm_devid attestor then can never attest this node "
                      "until a new DevID is provisioned and certified): never run it to fix attestation")
DEFAULT_CPU_PERCENT = 50.0


@dataclass
class Diagnosis:
    """What a diagnosis found."""

    issue: int
    title: str
    cause: str                      # a short key: "wrong_tpm_device_path", "none", ...
    summary: str                    # the cause, in words
    evidence: list[str] = field(default_factory=list)
    resolution: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fault(self) -> bool:
        return self.cause not in ("none", "not_applicable")

    def text(self) -> str:
        lines = [f"Issue {self.issue} ({self.title}): {self.summary}", f"  cause: {self.cause}"]
        lines += ["  evidence:"] + [f"    - {e}" for e in self.evidence] if self.evidence else []
        lines += ["  resolution (guide):"] + [f"    - {r}" for r in self.resolution] if self.resolution else []
        lines += ["  WARNING: " + w for w in self.warnings]
        return redact("\n".join(lines))


def _tail(node: Node, component: str, lines: int = 200, words: tuple[str, ...] = ()) -> list[str]:
    text = node.log_lines(component)[-lines:]
    if words:
        text = [ln for ln in text if any(w in ln.lower() for w in words) and "PID attested" not in ln
                and "Plugin " not in ln and "Configured plugin" not in ln]
    return [redact(ln.strip())[:300] for ln in text]


# -- Issue 1 ------------------------------------------------------------------------
ISSUE1_RESOLUTION = [
    "Verify TPM device path in agent.conf (tpm_device_path; a character device /dev/tpmrm0 or an swtpm socket)",
    "Ensure hash_algorithm matches between server and agent: on real SPIRE neither tpm_devid nor the tpm "
    "plugin has that key; what must match is the server's devid_ca_path / endorsement_ca_path and the "
    "agent's DevID and EK certificates",
    "Check TPM device is accessible (by the agent's user)",
    "Do NOT clear the TPM (see the warning)",
]


def issue1_attestation(node: Node) -> Diagnosis:
    """Agent fails to attest with TPM: which of the four causes it is."""
    t = node.target
    d = Diagnosis(1, "Agent Fails to Attest with TPM", "unknown", "", resolution=list(ISSUE1_RESOLUTION),
                  warnings=[TPM2_CLEAR_WARNING])
    words = ("level=error", "level=warn", "tpm", "devid", "endorsement", "join_token", "attestation")
    agent_log = _tail(node, "agent", 400, words)[-12:]
    server_log = _tail(node, "server", 400, words)[-12:]
    agent_cfg, server_cfg = node.agent_config(missing_ok=True), node.server_config(missing_ok=True)
    agent_att = set(agent_cfg.plugins("NodeAttestor")) if agent_cfg else set()
    server_att = set(server_cfg.plugins("NodeAttestor")) if server_cfg else set()
    proc = node.agent_proc()
    ident = node.agent_id() or ""
    record = node.agent_record(ident) if ident and node.server.healthy() else None
    d.evidence += [f"agent.conf NodeAttestors: {sorted(agent_att)}", f"server.conf NodeAttestors: {sorted(server_att)}",
                   f"agent process: {proc.command if proc else 'not running'}",
                   f"agent ID: {redact(ident) or 'none'}"
                   + (f", server lists it as {record.get('attestation_type')}" if record else "")]
    tpm_name = next((a for a in TPM_ATTESTORS if a in agent_att), None)

    def found(cause: str, summary: str, *extra: str) -> Diagnosis:
        d.cause, d.summary = cause, summary
        d.evidence += list(extra)
        d.evidence += [f"agent log: {ln}" for ln in agent_log[-6:]] + [f"server log: {ln}" for ln in server_log[-6:]]
        return d

    # 1. a join token still given to the agent: it attests by join_token whatever its config names
    jt_sources = []
    if proc and (flag := services.join_token_flag(proc.argv)):
        jt_sources.append(f"the agent process was started with {flag}")
    if agent_cfg:
        for key in ("join_token", "join_token_file"):
            if key in agent_cfg.section("agent"):
                jt_sources.append(f"agent.conf sets agent.{key}")
    if t.agent.join_token_file:
        jt_sources.append(f"the target passes agent.join_token_file {t.agent.join_token_file}")
    if tpm_name and (jt_sources or is_join_token_agent(ident)):
        return found("join_token_passed", "a join token is still passed to the agent: SPIRE then attests "
                     "by join_token whatever NodeAttestor agent.conf names (guide Step 6 does exactly this)",
                     *(jt_sources or [f"agent.conf names {tpm_name} but the agent's SVID is a join_token one"]),
                     "do: start the agent with no -joinToken, no join_token / join_token_file, after dropping "
                     "its cached join_token SVID (migration step 6 does this)")
    if not tpm_name:
        d.cause = "not_applicable"
        d.summary = "agent.conf has no TPM NodeAttestor yet (Phase 3): the agent is not meant to attest with the TPM"
        return d
    if is_tpm_agent(ident) and record \
            and record.get("attestation_type") in TPM_ATTESTORS:
        d.cause, d.summary = "none", f"no fault: the agent is attested by {record.get('attestation_type')}"
        d.warnings = [TPM2_CLEAR_WARNING]
        return d
    data = (agent_cfg.plugins("NodeAttestor").get(tpm_name) or {}).get("plugin_data") or {}

    # 2. the TPM the agent is told to use
    device = data.get("tpm_device_path")
    if tpm_name == "tpm_devid":
        if device:
            path = Path(device)
            problem = None
            if not path.exists():
                problem = f"{device} does not exist"
            elif not (path.is_char_device() or path.is_socket()):
                problem = f"{device} is neither a character device nor a unix socket"
            else:
                try:
                    tpm.probe(TPMSpec(device=path))
                except MigrationError as exc:
                    problem = f"{device} does not answer as a TPM: {exc.message}"
            if problem:
                return found("wrong_tpm_device_path", f"wrong tpm_device_path in agent.conf: {problem}",
                             f"agent.conf tpm_device_path = {device!r}; the target's TPM is {t.tpm.device}",
                             f"do: set tpm_device_path = \"{t.tpm.device}\" in {t.agent.config}")
        elif not list(Path("/dev").glob("tpmrm*")) and not list(Path("/dev").glob("tpm[0-9]*")):
            return found("wrong_tpm_device_path", "agent.conf sets no tpm_device_path and there is no /dev/tpmrm* or /dev/tpm*",
                         f"do: set tpm_device_path = \"{t.tpm.device}\" in {t.agent.config}")

    # 3. the server does not know the agent's attestor
    if tpm_name not in server_att:
        return found("server_attestor_missing", f"the server has no NodeAttestor \"{tpm_name}\": it cannot "
                     "verify the agent's TPM attestation",
                     f"server.conf NodeAttestors {sorted(server_att)}",
                     "do: add it next to join_token (migration step 4) and restart the server")

    # 4. the server's CA bundles against the agent's DevID and the TPM's EK certificate
    if tpm_name == "tpm_devid" and server_cfg:
        sdata = (server_cfg.plugins("NodeAttestor").get(tpm_name) or {}).get("plugin_data") or {}
        devid_cert = Path(data.get("devid_cert_path") or t.attestor.devid_cert)
        devid_ca, ek_ca = sdata.get("devid_ca_path"), sdata.get("endorsement_ca_path")
        problems = []
        try:
            leaf = att._pem_bundle(devid_cert, "DevID certificate")[0]
            cas = att._pem_bundle(Path(devid_ca), "DevID CA bundle") if devid_ca else []
            if not any(leaf.issuer == c.subject for c in cas):
                problems.append(f"DevID CA mismatch: {devid_cert} is issued by {leaf.issuer.rfc4514_string()}, "
                                f"which is not in the server's devid_ca_path {devid_ca} "
                                f"({', '.join(c.subject.rfc4514_string() for c in cas) or 'empty'})")
        except MigrationError as exc:
            problems.append(f"DevID CA mismatch: {exc.message} ({exc.found})")
        try:
            info = tpm.probe(TPMSpec(device=Path(device)) if device else t.tpm)
            if info.ek_cert_der is None:
                problems.append("the TPM has no EK certificate in NV 0x01c00002")
            elif not ek_ca or not tpm.ek_cert_chains_to(info.ek_cert_der, Path(ek_ca)):
                problems.append(f"EK CA mismatch: the TPM's EK certificate does not chain to the server's "
                                f"endorsement_ca_path {ek_ca} (it must hold the EK certificate's direct issuer)")
        except MigrationError as exc:
            problems.append(f"cannot read the TPM to check the EK certificate: {exc.message}")
        if problems:
            return found("ca_mismatch", "DevID or EK CA mismatch: " + "; ".join(problems),
                         "do: put the DevID certificate's issuing CA in devid_ca_path and the EK certificate's "
                         "direct issuer in endorsement_ca_path, restart the server")
    return found("unknown", "the agent is not TPM-attested and none of the four known causes was found; read the logs")


# -- Issue 2 ------------------------------------------------------------------------
ISSUE2_RESOLUTION = [
    "Wait for agent to complete attestation (may take 10-30 seconds)",
    "Verify agent appears in agent list",
    "Use correct agent SPIFFE ID as parent ID",
    "Check server logs for attestation errors",
]


def expected_parent(node: Node) -> str | None:
    cfg = node.agent_config(missing_ok=True)
    if cfg and set(cfg.plugins("NodeAttestor")) & set(TPM_ATTESTORS):
        return att.expected_agent_id(node.target) or node.agent_id()
    return node.agent_id()


def issue2_parent_not_found(node: Node, parent_id: str | None = None, deadline_s: float | None = None,
                            interval: float = 0.5) -> Diagnosis:
    """Wait (deadline) for the parent agent to attest; then say which agent IDs exist."""
    t = node.target
    parent = parent_id or expected_parent(node)
    deadline_s = t.thresholds.start_timeout_s if deadline_s is None else deadline_s
    d = Diagnosis(2, "Workload Registration Fails: parent ID not found", "unknown", "",
                  resolution=list(ISSUE2_RESOLUTION))
    t0 = time.monotonic()
    agents: list[dict[str, Any]] = []
    while True:
        try:
            agents = node.server.agents()
        except MigrationError as exc:
            agents, err = [], exc.message
        else:
            err = None
        if parent and any(id_str(a["id"]) == parent for a in agents):
            break
        if time.monotonic() - t0 >= deadline_s:
            break
        time.sleep(interval)
    waited = time.monotonic() - t0
    listed = [f"{redact(id_str(a['id']))} ({a.get('attestation_type')})" for a in agents]
    d.data = {"parent": redact(parent or ""), "agents": listed, "waited_s": round(waited, 1)}
    d.evidence.append(f"agent list ({len(agents)}): {listed or 'empty'}" + (f"; server: {err}" if err else ""))
    try:
        entries = node.server.entries()
        known = {id_str(a["id"]) for a in agents} | {t.server_id} | {id_str(e["spiffe_id"]) for e in entries}
        orphans = sorted({redact(id_str(e["parent_id"])) for e in entries if id_str(e["parent_id"]) not in known})
        if orphans:
            d.evidence.append(f"entries whose parent is no attested agent nor node alias (never served): {orphans}")
            d.data["orphan_parents"] = orphans
    except MigrationError:
        pass
    if parent and any(id_str(a["id"]) == parent for a in agents):
        d.cause = "none"
        d.summary = f"the parent {redact(parent)} is an attested agent (found after {waited:.1f} s): register under it"
        return d
    d.cause = "agent_not_attested"
    d.summary = (f"the parent {redact(parent or '<unknown>')} is not in the agent list after waiting {waited:.1f} s: "
                 f"the agent has not attested. Agent IDs that exist: {listed or 'none'}")
    proc = node.agent_proc()
    d.evidence.append(f"agent process: {proc.command if proc else 'not running'}")
    d.evidence += [f"server log: {ln}" for ln in _tail(node, "server", 300, ("attest", "error"))[-5:]]
    d.evidence += [f"agent log: {ln}" for ln in _tail(node, "agent", 300, ("attest", "error"))[-5:]]
    d.resolution.append("note: SPIRE 1.15.3 does not itself refuse an entry whose parent has not attested: "
                        "the entry is created and never served; the suite checks the parent first")
    return d


# -- Issue 3 ------------------------------------------------------------------------
ISSUE3_RESOLUTION = [
    "PCR values reflect system state and change with updates/reboots",
    "For development: Use Docker selectors only (no TPM selectors)",
    "For production: Document expected PCR values and update after changes",
    "Re-register workload with current PCR values; better on real SPIRE: no attestor emits tpm:pcr "
    "selectors, so a workload entry with one is never matched: bind workloads to TPM nodes with a node "
    "alias built from tpm_devid selectors instead",
]


def issue3_pcr_changed(node: Node, journal: Journal | None) -> Diagnosis:
    """Every registration or recorded expectation that depends on PCR values that changed."""
    t = node.target
    d = Diagnosis(3, "PCR Values Change After Reboot", "unknown", "", resolution=list(ISSUE3_RESOLUTION))
    deps: list[tuple[str, str, int, str]] = []   # (what, bank, index, expected)
    default_bank = getattr(t.attestor, "pcr_bank", "sha256") or "sha256"
    for e in node.server.entries():
        for sel in e.get("selectors") or []:
            parsed = pcrs.parse_pcr_selector(sel["type"], sel["value"])
            if parsed and parsed[2]:
                bank, index, value = parsed
                deps.append((f"entry {e['id']} {id_str(e['spiffe_id'])} selector {sel['type']}:{sel['value']}",
                             bank or default_bank, index, value.removeprefix("0x")))
    for bank, values in pcrs.recorded(journal).items():
        for index, value in values.items():
            deps.append((f"recorded expectation {bank}:{index} in {journal.path}", bank, index, value))
    if not deps:
        d.cause, d.summary = "none", "no registration and no recorded expectation depends on PCR values"
        return d
    current: dict[str, dict[int, str]] = {}
    for bank in sorted({b for _, b, _, _ in deps}):
        current[bank] = tpm.pcr_read(t.tpm, bank, sorted({i for _, b, i, _ in deps if b == bank}))
    changed = [(w, b, i, exp, current[b].get(i)) for w, b, i, exp in deps if current[b].get(i) != exp]
    d.data = {"changed": [{"what": w, "pcr": f"{b}:{i}", "expected": exp, "now": now} for w, b, i, exp, now in changed],
              "dependencies": len(deps)}
    d.evidence += [f"{w}: PCR {b}:{i} expected {exp[:16]}..., now {(now or 'unreadable')[:16]}..."
                   for w, b, i, exp, now in changed]
    d.evidence += [f"unchanged: {w}" for w, b, i, exp in deps if current[b].get(i) == exp]
    if any(w.startswith("entry") for w, *_ in deps):
        d.warnings.append("workload entries carry tpm:pcr selectors: real SPIRE never matches them "
                          "(no attestor emits tpm:pcr), those workloads get no SVID whatever the PCRs")
    if changed:
        d.cause = "pcr_changed"
        d.summary = (f"{len(changed)} of {len(deps)} PCR dependencies no longer match the TPM "
                     f"(PCRs {sorted({f'{b}:{i}' for _, b, i, _, _ in changed})})")
    else:
        d.cause, d.summary = "none", f"all {len(deps)} PCR dependencies match the TPM's current values"
    return d


# -- Issue 4 ------------------------------------------------------------------------
ISSUE4_RESOLUTION = [
    "TPM operations are slower than software (expected); on real SPIRE the TPM is used at attestation, "
    "SVIDs are served from the agent's cache",
    "Use /dev/tpmrm0 for better concurrency",
    "Cache SVIDs in application (don't fetch repeatedly)",
    "Monitor and set appropriate timeouts",
]


def _cpu_ticks(node: Node, pid: int) -> int | None:
    """utime + stime of *pid*, from /proc/<pid>/stat on the node."""
    stat = node.view.read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def issue4_performance(node: Node, samples: int = 5, timeout: float = 10.0) -> Diagnosis:
    """SVID fetch latency (the workload's check) and agent CPU, against the target's thresholds."""
    t = node.target
    d = Diagnosis(4, "Performance Degradation", "unknown", "", resolution=list(ISSUE4_RESOLUTION))
    limit_ms = t.thresholds.svid_fetch_ms
    limit_cpu = getattr(t.thresholds, "agent_cpu_percent", DEFAULT_CPU_PERCENT)
    proc = node.agent_proc()
    cpu: list[float | None] = [None]
    fetches: list[float] = []
    errors: list[str] = []
    t0 = time.monotonic()
    stop = threading.Event()

    def measure_cpu() -> None:
        if proc is not None:
            start, s0 = _cpu_ticks(node, proc.pid), time.monotonic()
            stop.wait(timeout=samples * timeout)
            end, s1 = _cpu_ticks(node, proc.pid), time.monotonic()
            if start is not None and end is not None and s1 > s0:
                cpu[0] = 100.0 * (end - start) / os.sysconf("SC_CLK_TCK") / (s1 - s0)

    sampler = threading.Thread(target=measure_cpu, daemon=True)
    sampler.start()
    rt = node.runtime
    for _ in range(samples):
        try:
            res = rt.check(timeout)
            if res.get("fetch_ms") is not None:
                fetches.append(float(res["fetch_ms"]))
            if res.get("error"):
                errors.append(str(res["error"]))
        except MigrationError as exc:
            errors.append(exc.message)
    stop.set()
    sampler.join(timeout=5)
    elapsed = time.monotonic() - t0
    over = [f for f in fetches if f > limit_ms]
    median = statistics.median(fetches) if fetches else None
    d.data = {"fetch_ms": fetches, "median_ms": median, "threshold_ms": limit_ms,
              "agent_cpu_percent": None if cpu[0] is None else round(cpu[0], 1),
              "cpu_threshold_percent": limit_cpu, "errors": errors, "interval_s": round(elapsed, 1)}
    d.evidence.append(f"SVID fetch (workload check, {len(fetches)} samples): "
                      f"{[round(f, 1) for f in fetches]} ms, median {median if median is None else round(median, 1)} ms, "
                      f"threshold {limit_ms:g} ms")
    d.evidence.append(f"agent CPU over {elapsed:.1f} s: "
                      f"{'unknown (agent not running)' if cpu[0] is None else f'{cpu[0]:.1f}%'} "
                      f"(pid {proc.pid if proc else '-'}), threshold {limit_cpu:g}%")
    if errors:
        d.evidence.append(f"failed fetches: {errors[:3]}")
    causes = []
    if not fetches:
        causes.append("no SVID fetch succeeded")
    elif median is not None and median > limit_ms or len(over) * 2 > len(fetches):
        causes.append(f"slow SVID fetch: {len(over)} of {len(fetches)} over {limit_ms:g} ms (median {median:.1f} ms)")
    if cpu[0] is not None and cpu[0] > limit_cpu:
        causes.append(f"agent CPU {cpu[0]:.1f}% over {limit_cpu:g}%")
    if causes:
        d.cause = "slow_fetch" if any("fetch" in c for c in causes) else "agent_cpu"
        d.summary = "; ".join(causes)
    else:
        d.cause = "none"
        d.summary = f"within thresholds: median fetch {median:.1f} ms, agent CPU " \
                    f"{'unknown' if cpu[0] is None else f'{cpu[0]:.1f}%'}"
    return d
