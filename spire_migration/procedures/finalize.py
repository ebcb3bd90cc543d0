"""The guide's Strategy 2, last step: "once all agents migrated, remove join token attestor".

During a gradual migration the server runs ``join_token`` and the TPM attestor
side by side (dual mode: SPIRE servers take any number of NodeAttestors), and
each agent node is migrated on its own (``pytest -m migrate --target
target-<node>.toml``, or ``--node <node>``). :func:`finalize` removes
``join_token`` from server.conf only when the server lists no join_token agent
any more; otherwise it refuses and names the agents that remain (with the
node they belong to when a sibling target description says so, and the
workloads registered under them).

A real finalize holds the server lock and every node's lock (it records
``finalized_at`` in each node's journal) for all it does, taken before it
changes anything: a node whose run is in progress makes it stop at once.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any

from spire_migration.node import services
from spire_migration.errors import ConfigError, MigrationError, TargetError
from spire_migration.fileio import write_file
from spire_migration.config.hclconfig import load_config
from spire_migration.records.journal import Journal
from spire_migration.records.locks import server_lock
from spire_migration.redact import redact
from spire_migration.node.spiffe_ids import TPM_ATTESTORS
from spire_migration.node.spire import id_str
from spire_migration.config.target import Target
from spire_migration.verdict import StepResult

BACKUP = "server.conf.before-finalize"


def known_nodes(t: Target) -> dict[str, str]:
    """Agent ID -> node name, from the target descriptions next to this one (``target-*.toml``)."""
    out: dict[str, str] = {}
    if t.source is None:
        return out
    for path in t.siblings():
        try:
            other = Target.load(path)
        except TargetError:
            continue
        ident = services.agent_identity(other)
        if ident:
            out[ident] = other.node
    return out


def agents_by_attestor(t: Target) -> dict[str, list[dict[str, Any]]]:
    """The server's agents grouped by attestation type, each with its node and workloads."""
    server = services.server_cli(t)
    entries = server.entries()
    nodes = known_nodes(t)
    out: dict[str, list[dict[str, Any]]] = {}
    for a in server.agents():
        ident = id_str(a["id"])
        out.setdefault(a.get("attestation_type") or "?", []).append({
            "id": ident, "node": nodes.get(ident, "unknown node"),
            "workloads": sorted(id_str(e["spiffe_id"]) for e in entries if id_str(e["parent_id"]) == ident)})
    return out


def describe(agent: dict[str, Any]) -> str:
    work = ", ".join(agent["workloads"]) or "no entries"
    return redact(f"{agent['id']} ({agent['node']}; serves {work})")


def finalize(t: Target, journal: Journal, plan: bool = False) -> StepResult:
    """Remove the join_token NodeAttestor from the server, or refuse naming the agents left."""
    if plan:
        return _finalize(t, journal, [], plan=True)
    with contextlib.ExitStack() as held:
        held.enter_context(server_lock(t.journal.dir))
        journals = [journal if path == journal.path else Journal(path.parent)
                    for path in sorted(t.journal.dir.glob("*/journal.json"))]
        for node_journal in journals:
            held.enter_context(node_journal.lock())
        return _finalize(t, journal, journals, plan=False)


def _finalize(t: Target, journal: Journal, journals: list[Journal], plan: bool) -> StepResult:
    result = StepResult("after_migration_finalize", planned=plan)
    cfg = load_config(t.server.config)
    attestors = set(cfg.plugins("NodeAttestor"))
    if "join_token" in attestors:
        if not attestors & set(TPM_ATTESTORS):
            raise ConfigError("the server has no TPM node attestor: removing join_token would leave none",
                              expected="join_token and a TPM attestor side by side (dual mode)",
                              found=f"NodeAttestors {sorted(attestors)}",
                              remedy="migrate the agent nodes first (pytest -m migrate)")
        remaining = agents_by_attestor(t).get("join_token", [])
        if remaining:
            raise MigrationError(
                f"{len(remaining)} join_token agent(s) remain: the join_token attestor stays on the server",
                expected="every agent attested by the TPM attestor",
                found="join_token agents: " + "; ".join(describe(a) for a in remaining),
                remedy="migrate each of them (pytest -m migrate --target target-<node>.toml), "
                       "or evict the ones that are gone (spire-server agent evict), then finalize again")
        new = cfg.without_plugin("NodeAttestor", "join_token")
        result.changes.append(f"{'remove' if plan else 'removed'} NodeAttestor \"join_token\" from "
                              f"{t.server.config}:\n{cfg.diff(new, str(t.server.config))}")
        if not plan:
            path, _ = journal.backup_file(BACKUP, t.server.config)
            result.notes.append(f"server.conf backed up to {path}")
            write_file(t.server.config, new.text)
    else:
        result.notes.append("the server config has no join_token attestor (already finalized)")
    server = services.server_proc(t)
    if server is not None and services.started_before(server, t.server.config):
        if not plan:
            services.stop_server(t)
        result.changes.append(f"{'restart' if plan else 'restarted'} spire-server pid {server.pid} with the new config")
    if not plan and services.server_proc(t) is None:
        services.start_server(t)
        if server is None:
            result.changes.append("started spire-server")
    if not plan:
        if result.changes:  # the restart's transient agent errors are not the migration's: every node's journal
            now = datetime.now(timezone.utc).isoformat()
            for node_journal in journals:
                node_journal.set_fact("finalized_at", now)
        journal.complete("after_migration_finalize", result.changes)
    return result
