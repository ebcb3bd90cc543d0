"""Re-parent registration entries from one agent ID to another, in batches.

Make before break. Every entry under the old parent is recreated under the new
one with the same content (SPIFFE ID, selectors, TTLs, DNS names, hint,
federates_with, admin, downstream...), and every node alias entry that selects
the old agent (``spiffe_id:<old agent ID>``) gets a twin selecting the new one
(:func:`apply_make`); the new agent is served from its first sync, while the old
one still is. Only then are the old entries and aliases deleted by entry ID
(:func:`apply_break`). Safe to re-run after an interruption: entries already
present under the new parent (or aliases already selecting it) are not created twice.

Only the entries a re-parenting concerns are read (:func:`read_reparent_entries`:
three filtered ``entry show`` calls), never the whole table: in a fleet the
server holds every other node's entries, and a node's re-registration must not
cost more because of them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
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
    create: list[dict[str, Any]] = field(default_factory=list)   # create-data form (entries and alias twins)
    delete: list[str] = field(default_factory=list)              # entry IDs: old entries and old aliases

    def lines(self) -> list[str]:
        out = [f"create {e['spiffe_id']} under {e['parent_id']}"
               + (f" selecting {self.new_parent}" if e["parent_id"] != self.new_parent else "")
               for e in self.create]
        if self.delete:
            out.append(f"delete {len(self.delete)} entr{'y' if len(self.delete) == 1 else 'ies'} "
                       f"of {self.old_parent} by ID")
        return [redact(x) for x in out]

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete)

    @property
    def made(self) -> bool:
        """Nothing is left to create: the new parent is served (the old may still be)."""
        return not self.create


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
    """Compute the re-parenting from the entries that concern it (no server calls)."""
    plan = ReparentPlan(old_parent, new_parent)

    def selects(e: dict[str, Any], agent: str) -> bool:
        return id_str(e["parent_id"]) == server_id and any(
            s["type"] == "spiffe_id" and s["value"] == agent for s in e.get("selectors") or [])

    present = Counter(_key(entry_content(e)) for e in entries
                      if id_str(e["parent_id"]) == new_parent or selects(e, new_parent))
    for e in entries:
        if id_str(e["parent_id"]) == old_parent:
            parent = new_parent
        elif selects(e, old_parent):
            parent = server_id      # a node alias: its twin selects the new agent
        else:
            continue
        k = _key(moved_content(e, old_parent, new_parent))
        if present[k] > 0:
            present[k] -= 1         # already made by an earlier (or interrupted) run
        else:
            plan.create.append(_renamed(to_create_data(e, parent), old_parent, new_parent))
        plan.delete.append(e["id"])
    return plan


def read_reparent_entries(server: SpireServer, old_parent: str, new_parent: str,
                          server_id: str) -> list[dict[str, Any]]:
    """The entries :func:`plan_reparent` needs, read with server-side filters: those under
    the old and the new parent, and the node aliases (under the server) selecting either."""
    found: dict[str, dict[str, Any]] = {}
    for filters in ({"parentID": old_parent}, {"parentID": new_parent},
                    {"parentID": server_id, "selector": f"spiffe_id:{old_parent}"},
                    {"parentID": server_id, "selector": f"spiffe_id:{new_parent}"}):
        for e in server.entries(**filters):
            found.setdefault(e["id"], e)
    return list(found.values())


def reparent_plan(server: SpireServer, old_parent: str, new_parent: str, server_id: str) -> ReparentPlan:
    """Read what concerns this move (not the table) and plan it."""
    return plan_reparent(read_reparent_entries(server, old_parent, new_parent, server_id),
                         old_parent, new_parent, server_id)


def apply_make(server: SpireServer, plan: ReparentPlan) -> list[str]:
    """Create every entry and alias twin of the plan; nothing is deleted. Every status is checked."""
    if not plan.create:
        return []
    res = server.create_entries(plan.create)
    if res.failed:
        raise SpireError(f"{len(res.failed)} of {len(plan.create)} entries could not be created "
                         f"for the new agent; no old entry was deleted",
                         expected="every create result with status 0",
                         found="; ".join(f"{i}: {m}" for i, m in res.failed[:5]),
                         remedy="fix the cause and re-run: created entries are not duplicated")
    checkpoint("guide_step_8:entries created")
    return [redact(f"created {len(res.ok)} entr{'y' if len(res.ok) == 1 else 'ies'} for {plan.new_parent} "
                   f"(the old agent's are still there)")]


def apply_break(server: SpireServer, plan: ReparentPlan) -> list[str]:
    """Delete the old entries and aliases by ID, only once nothing is left to create."""
    if plan.create:
        raise SpireError("the old entries are not deleted before their copies exist",
                         expected="every entry made under the new agent first",
                         found=f"{len(plan.create)} still to create", remedy="run the make part first")
    if not plan.delete:
        return []
    res = server.delete_entries(plan.delete)
    if res.failed:
        raise SpireError("old entries could not be deleted", expected="status 0",
                         found="; ".join(f"{i}: {m}" for i, m in res.failed[:5]),
                         remedy="re-run: deletion by ID is idempotent")
    return [redact(f"deleted {len(plan.delete)} entr{'y' if len(plan.delete) == 1 else 'ies'} "
                   f"of {plan.old_parent}")]


def apply_reparent(server: SpireServer, plan: ReparentPlan) -> list[str]:
    """Make, then break: the whole move in one call."""
    changes = apply_make(server, plan)
    return changes + apply_break(server, replace(plan, create=[]))
