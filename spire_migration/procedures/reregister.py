"""Re-parent registration entries from one agent ID to another, in batches.

Every entry under the old parent is recreated under the new one with the same
content (SPIFFE ID, selectors, TTLs, DNS names, hint, federates_with, admin,
downstream...), then the old entries are deleted by entry ID. Node alias
entries that select the old agent (``spiffe_id:<old agent ID>``) are updated to
select the new one. Safe to re-run after an interruption: entries already
present under the new parent are not created twice.

Only the entries a re-parenting concerns are read (:func:`read_reparent_entries`:
three filtered ``entry show`` calls), never the whole table: in a fleet the
server holds every other node's entries, and a node's re-registration must not
cost more because of them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from spire_migration.errors import SpireError
from spire_migration.procedures.faults import checkpoint
from spire_migration.redact import redact
from spire_migration.node.spire import SpireServer, entry_content, id_str, to_create_data


@dataclass
class ReparentPlan:
    """What a re-parenting will do."""

    old_parent: str
    new_parent: str
    create: list[dict[str, Any]] = field(default_factory=list)   # create-data form
    delete: list[str] = field(default_factory=list)              # entry IDs under the old parent
    aliases: list[dict[str, Any]] = field(default_factory=list)  # update-data form

    def lines(self) -> list[str]:
        out = [f"create {e['spiffe_id']} under {self.new_parent}" for e in self.create]
        out += [f"point node alias {a['spiffe_id']} at {self.new_parent}" for a in self.aliases]
        if self.delete:
            out.append(f"delete {len(self.delete)} entr{'y' if len(self.delete) == 1 else 'ies'} "
                       f"under {self.old_parent} by ID")
        return [redact(x) for x in out]

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete or self.aliases)


def _key(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True)


def moved_content(entry: dict[str, Any], old_parent: str, new_parent: str) -> dict[str, Any]:
    """An entry's content as it must read after the move (``spiffe_id:<old>`` selectors renamed)."""
    content = entry_content(entry)
    content["selectors"] = sorted(f"spiffe_id:{new_parent}" if s == f"spiffe_id:{old_parent}" else s
                                  for s in content["selectors"])
    return content


def _renamed(data: dict[str, Any], old_parent: str, new_parent: str) -> dict[str, Any]:
    data["selectors"] = [{"type": "spiffe_id", "value": new_parent}
                         if (s["type"] == "spiffe_id" and s["value"] == old_parent) else s
                         for s in data.get("selectors", [])]
    return data


def plan_reparent(entries: list[dict[str, Any]], old_parent: str, new_parent: str,
                  server_id: str) -> ReparentPlan:
    """Compute the re-parenting from the full entry list (no server calls)."""
    plan = ReparentPlan(old_parent, new_parent)
    under_new = Counter(_key(entry_content(e)) for e in entries if id_str(e["parent_id"]) == new_parent)
    for e in entries:
        if id_str(e["parent_id"]) != old_parent:
            continue
        k = _key(moved_content(e, old_parent, new_parent))
        if under_new[k] > 0:
            under_new[k] -= 1       # already recreated by an interrupted run
        else:
            plan.create.append(_renamed(to_create_data(e, new_parent), old_parent, new_parent))
        plan.delete.append(e["id"])
    for e in entries:
        sels = e.get("selectors") or []
        if id_str(e["parent_id"]) == server_id and any(
                s["type"] == "spiffe_id" and s["value"] == old_parent for s in sels):
            data = _renamed(to_create_data(e, server_id), old_parent, new_parent)
            data["entry_id"] = e["id"]
            plan.aliases.append(data)
    return plan


def read_reparent_entries(server: SpireServer, old_parent: str, new_parent: str,
                          server_id: str) -> list[dict[str, Any]]:
    """The entries :func:`plan_reparent` needs, read with server-side filters: those under
    the old and the new parent, and the node aliases (under the server) selecting the old agent."""
    found: dict[str, dict[str, Any]] = {}
    for filters in ({"parentID": old_parent}, {"parentID": new_parent},
                    {"parentID": server_id, "selector": f"spiffe_id:{old_parent}"}):
        for e in server.entries(**filters):
            found.setdefault(e["id"], e)
    return list(found.values())


def reparent_plan(server: SpireServer, old_parent: str, new_parent: str, server_id: str) -> ReparentPlan:
    """Read what concerns this move (not the table) and plan it."""
    return plan_reparent(read_reparent_entries(server, old_parent, new_parent, server_id),
                         old_parent, new_parent, server_id)


def apply_reparent(server: SpireServer, plan: ReparentPlan) -> list[str]:
    """Create, update aliases, then delete old entries; every result's status is checked."""
    changes: list[str] = []
    if plan.create:
        res = server.create_entries(plan.create)
        if res.failed:
            raise SpireError(f"{len(res.failed)} of {len(plan.create)} entries could not be created "
                             f"under the new agent; no old entry was deleted",
                             expected="every create result with status 0",
                             found="; ".join(f"{i}: {m}" for i, m in res.failed[:5]),
                             remedy="fix the cause and re-run: created entries are not duplicated")
        checkpoint("guide_step_8:entries created")
        changes.append(f"created {len(res.ok)} entr{'y' if len(res.ok) == 1 else 'ies'} under {plan.new_parent}")
    if plan.aliases:
        res = server.update_entries(plan.aliases)
        if res.failed:
            raise SpireError("node alias entries could not be updated", expected="status 0",
                             found="; ".join(f"{i}: {m}" for i, m in res.failed[:5]))
        changes.append(f"pointed {len(res.ok)} node alias entr{'y' if len(res.ok) == 1 else 'ies'} at {plan.new_parent}")
    if plan.delete:
        res = server.delete_entries(plan.delete)
        if res.failed:
            raise SpireError("old entries could not be deleted", expected="status 0",
                             found="; ".join(f"{i}: {m}" for i, m in res.failed[:5]),
                             remedy="re-run: deletion by ID is idempotent")
        changes.append(f"deleted {len(plan.delete)} entr{'y' if len(plan.delete) == 1 else 'ies'} under {plan.old_parent}")
    return [redact(c) for c in changes]
