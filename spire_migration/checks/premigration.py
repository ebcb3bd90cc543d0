"""The guide's Pre-Migration Checklist, as read-only checks on a :class:`~spire_migration.node.facade.Node`.

Each check returns a :class:`~spire_migration.verdict.CheckResult` with what
was expected, what was found, the evidence read, and the guide's remedy; step
definitions assert on ``result.ok`` and reports keep the rest. Migration step 1
and rollback step 4 use the same checks as their gate.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from spire_migration.node import tpm
from spire_migration.node.facade import Node
from spire_migration.redact import redact
from spire_migration.node.spire import id_str, selector_strs
from spire_migration.verdict import CheckResult, check, guarded

# -- processes ----------------------------------------------------------------
def _running(component: str, info, cli, spec, remedy: str) -> CheckResult:
    """One SPIRE process: found by pid file (or socket owner) and answering healthcheck."""
    healthy = info is not None and cli.healthy()
    found = (f"pid {info.pid}, healthy" if healthy else
             f"no spire-{component} process" if info is None else f"pid {info.pid}, healthcheck failed")
    return check(f"SPIRE {component} running and healthy", healthy,
                 f"a spire-{component} process (pid file {spec.pid_file}) answering healthcheck on {spec.socket}",
                 found, remedy=remedy, pid=info.pid if info else None)


@guarded
def server_running(node: Node) -> CheckResult:
    """The SPIRE server is running and healthy."""
    t = node.target
    return _running("server", node.server_proc(), node.server, t.server,
                    f"start the server: {t.server_bin} run -config {t.server.config}; read {t.server.log}")


@guarded
def agent_running(node: Node) -> CheckResult:
    """The SPIRE agent is running and healthy."""
    return _running("agent", node.agent_proc(), node.agent, node.target.agent,
                    f"start the agent; read {node.target.agent.log}")


@guarded
def agent_attested_by(node: Node, attestor: str) -> CheckResult:
    """The agent is attested by the given node attestor."""
    ident = node.agent_id()
    record = node.agent_record(ident) if ident else None
    prefix = node.target.agent_id_prefix(attestor)
    ok = bool(ident and ident.startswith(prefix) and record and record.get("attestation_type") == attestor)
    found = ("the agent has no SVID" if not ident else
             f"agent ID {ident}, " + (f"server lists it as {record.get('attestation_type')}" if record else "not in the server's agent list"))
    return check(f"agent attested by {attestor}", ok, f"agent ID {prefix}<id>, listed by the server as {attestor}",
                 found, remedy="re-attest the agent" if attestor == "join_token" else
                 "see Issue 1 (Agent Fails to Attest with TPM)",
                 agent_id=redact(ident or ""), attestation_type=(record or {}).get("attestation_type"),
                 selectors=selector_strs(record or {}))


@guarded
def workload_entry_under_agent(node: Node) -> CheckResult:
    """The workload entry is registered under this node's agent."""
    spiffe_id = node.target.workload.spiffe_id
    ident = node.agent_id() or "<no agent ID>"
    entries = [e for e in node.entries if id_str(e["spiffe_id"]) == spiffe_id]
    parents = [id_str(e["parent_id"]) for e in entries]
    aliases = {id_str(e["spiffe_id"]) for e in node.alias_entries_for(ident)}
    ok = any(p == ident or p in aliases for p in parents)
    want = sorted(node.target.workload.selectors)
    sel_ok = any(selector_strs(e) == want for e in entries)
    return check("workload entry registered under the agent", ok and sel_ok,
                 f"{spiffe_id} with parent {ident} (or a node alias of it) and selectors {want}",
                 f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} with parents {parents}" if entries else "no such entry",
                 remedy="spire-server entry create -parentID <agent ID> -spiffeID ... -selector ...",
                 entry_ids=[e["id"] for e in entries], parents=[redact(p) for p in parents])


@guarded
def workload_verified(node: Node, since: datetime | None = None) -> CheckResult:
    """The workload fetched an SVID and its mTLS peer check logged VERIFIED."""
    rt = node.runtime
    instances = [i for i in rt.instances() if i.state.lower() == "running"]
    logs = {i.name: rt.logs(i, since) for i in instances}
    fetched = [n for n, text in logs.items() if "Successfully fetched SVIDs" in text]
    verified = [n for n, text in logs.items() if "VERIFIED" in text]
    ok = bool(fetched) and bool(verified)
    lines = [line for text in logs.values() for line in text.splitlines()
             if "Successfully fetched SVIDs" in line or "VERIFIED" in line or "Agent attestation" in line]
    return check("workload fetched an SVID and logged VERIFIED", ok,
                 "a running workload logging 'Successfully fetched SVIDs' and 'VERIFIED'" +
                 (f" since {since.isoformat()}" if since else ""),
                 f"{len(instances)} running instance(s); fetched in {fetched or 'none'}; VERIFIED in {verified or 'none'}",
                 remedy="check the workload entry's selectors and the agent; read the workload logs",
                 instances=[i.name for i in instances], log_lines=lines[-6:])


# -- TPM ----------------------------------------------------------------------
@guarded
def tpm_usable(node: Node) -> CheckResult:
    """The TPM is present and usable: TPM 2.0 with a sha256 PCR bank."""
    info = tpm.probe(node.target.tpm)
    ok = info.family == "2.0" and "sha256" in info.pcr_banks
    return check("TPM 2.0 present and usable", ok,
                 f"a TPM 2.0 at {node.target.tpm.device} with a sha256 PCR bank",
                 f"TPM {info.family} ({info.manufacturer}) at {info.path} ({info.kind}), banks {info.pcr_banks}",
                 remedy="enable the TPM in BIOS/UEFI, or fix tpm.device in the target description",
                 family=info.family, manufacturer=info.manufacturer, banks=info.pcr_banks,
                 path=str(info.path), kind=info.kind, ek_cert=info.ek_cert_der is not None)


# -- backups and registrations -----------------------------------------------
def backup_ready(node: Node, journal_backups: dict[str, Any]) -> CheckResult:
    """A backup of the SPIRE configuration exists, or is planned (step 3 will take it)."""
    have = sorted(journal_backups)
    jdir = node.target.journal.dir
    parent = jdir if jdir.exists() else jdir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    writable = os.access(parent, os.W_OK)
    ok = bool(have) or writable
    found = (f"backups in the journal: {have}" if have else
             f"no backup yet; step 3 will write it under {jdir} ({'writable' if writable else 'NOT writable'})")
    return check("backup exists or is planned", ok, "a backup in the journal, or a writable journal dir",
                 found, remedy=f"make {jdir} writable for the user running the suite",
                 backups=have, journal_dir=str(jdir), planned=not have)


@guarded
def critical_workloads_registered(node: Node) -> CheckResult:
    """No critical workload is left unregistered."""
    critical = node.target.workload.critical
    ids = {id_str(e["spiffe_id"]) for e in node.entries}
    missing = [c for c in critical if c not in ids]
    unmatched = []
    for inst in node.runtime.instances():
        sels = node.runtime.selectors(inst)
        if not any(set(selector_strs(e)) <= sels for e in node.entries if selector_strs(e)):
            unmatched.append(inst.name)
    ok = not missing and not unmatched
    return check("no critical workload left unregistered", ok,
                 f"entries for {critical}, and an entry matching every running workload instance",
                 f"missing entries: {missing or 'none'}; unregistered instances: {unmatched or 'none'}",
                 remedy="register them before migrating, or plan for their downtime",
                 critical=critical, missing=missing, unregistered_instances=unmatched)


@guarded
def registrations_known(node: Node) -> CheckResult:
    """Current registrations are known: count and IDs, by parent."""
    by_parent: dict[str, list[str]] = {}
    for e in node.entries:
        by_parent.setdefault(redact(id_str(e["parent_id"])), []).append(id_str(e["spiffe_id"]))
    total = len(node.entries)
    return check("current registrations known", total > 0, "at least one registration entry, listed",
                 f"{total} entries under {len(by_parent)} parent(s)",
                 remedy="spire-server entry show -output json",
                 count=total, by_parent={k: sorted(v) for k, v in by_parent.items()},
                 read_at=datetime.now(timezone.utc).isoformat())
