"""Re-parenting: what moves, aliases, interruptions; it reads only what concerns the move (fleets)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from spire_migration.reregister import (apply_reparent, moved_content, plan_reparent, read_reparent_entries,
                                        reparent_plan)
from spire_migration.spire import BatchResult, id_str, selector_strs

OLD = "spiffe://example.org/spire/agent/join_token/1234abcd-0000-1111-2222-333344445555"
NEW = "spiffe://example.org/spire/agent/tpm_devid/ab12"
SERVER = "spiffe://example.org/spire/server"


def _id(s: str) -> dict:
    td, _, path = s.removeprefix("spiffe://").partition("/")
    return {"trust_domain": td, "path": "/" + path}


def _entry(eid: str, spiffe: str, parent: str, sels: list[str], **extra) -> dict:
    return {"id": eid, "spiffe_id": _id(spiffe), "parent_id": _id(parent),
            "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in sels], **extra}


def test_reparent_moves_every_entry_and_repoints_aliases():
    entries = [
        _entry("1", "spiffe://example.org/k8s-workload", OLD, ["docker:label:a:b"], x509_svid_ttl=600,
               dns_names=["w.example.org"], hint="web", admin=True),
        _entry("2", "spiffe://example.org/agent", OLD, [f"spiffe_id:{OLD}"]),
        _entry("3", "spiffe://example.org/nodes/all", SERVER, [f"spiffe_id:{OLD}"]),
        _entry("4", "spiffe://example.org/other", "spiffe://example.org/spire/agent/join_token/zzzz", ["unix:uid:1"]),
    ]
    plan = plan_reparent(entries, OLD, NEW, SERVER)
    assert sorted(e["spiffe_id"] for e in plan.create) == ["spiffe://example.org/agent",
                                                            "spiffe://example.org/k8s-workload"]
    workload = next(e for e in plan.create if e["spiffe_id"].endswith("k8s-workload"))
    assert workload["parent_id"] == NEW and workload["x509_svid_ttl"] == 600 and workload["admin"] is True
    assert workload["dns_names"] == ["w.example.org"] and workload["hint"] == "web"
    alias_under_agent = next(e for e in plan.create if e["spiffe_id"].endswith("/agent"))
    assert alias_under_agent["selectors"] == [{"type": "spiffe_id", "value": NEW}]
    assert plan.delete == ["1", "2"]
    assert [a["entry_id"] for a in plan.aliases] == ["3"]
    assert plan.aliases[0]["selectors"] == [{"type": "spiffe_id", "value": NEW}]
    assert not any("zzzz" in json.dumps(e) for e in plan.create)


def test_reparent_after_an_interruption_creates_nothing_twice():
    old = _entry("1", "spiffe://example.org/k8s-workload", OLD, ["docker:label:a:b"])
    done = _entry("9", "spiffe://example.org/k8s-workload", NEW, ["docker:label:a:b"])
    plan = plan_reparent([old, done], OLD, NEW, SERVER)
    assert plan.create == [] and plan.delete == ["1"]
    assert moved_content(old, OLD, NEW) == moved_content(done, OLD, NEW)


class FakeServer:
    """``entry show`` filters as the server applies them (selector: superset), batch calls."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.table = {e["id"]: e for e in entries}
        self.reads: list[dict[str, str]] = []
        self.ids = (f"n{i}" for i in itertools.count())

    def entries(self, **filters: str) -> list[dict[str, Any]]:
        self.reads.append(filters)
        out = list(self.table.values())
        if "parentID" in filters:
            out = [e for e in out if id_str(e["parent_id"]) == filters["parentID"]]
        if "spiffeID" in filters:
            out = [e for e in out if id_str(e["spiffe_id"]) == filters["spiffeID"]]
        if "selector" in filters:
            out = [e for e in out if filters["selector"] in selector_strs(e)]
        return out

    def create_entries(self, data: list[dict[str, Any]]) -> BatchResult:
        made = []
        for d in data:
            e = {**d, "id": next(self.ids), "spiffe_id": _id(d["spiffe_id"]), "parent_id": _id(d["parent_id"])}
            self.table[e["id"]] = e
            made.append(e)
        return BatchResult(made, [])

    def update_entries(self, data: list[dict[str, Any]]) -> BatchResult:
        for d in data:
            self.table[d["entry_id"]].update(selectors=d["selectors"])
        return BatchResult([{"id": d["entry_id"]} for d in data], [])

    def delete_entries(self, ids: list[str]) -> BatchResult:
        for i in ids:
            self.table.pop(i, None)
        return BatchResult([{"id": i} for i in ids], [])


def _fleet(nodes: int) -> list[dict]:
    """This node's entries, one interrupted copy under NEW, an alias; and other nodes' entries."""
    mine = [_entry(f"m{i}", f"spiffe://example.org/w{i}", OLD, [f"unix:uid:{i}"]) for i in range(5)]
    mine.append(_entry("done", "spiffe://example.org/w0", NEW, ["unix:uid:0"]))
    mine.append(_entry("alias", "spiffe://example.org/nodes", SERVER, [f"spiffe_id:{OLD}"]))
    others = [_entry(f"o{n}-{i}", f"spiffe://example.org/w{i}", f"spiffe://example.org/spire/agent/x/{n}",
                     [f"unix:uid:{i}"]) for n in range(nodes) for i in range(5)]
    others.append(_entry("other-alias", "spiffe://example.org/nodes", SERVER, ["spiffe_id:spiffe://example.org/x"]))
    return mine + others


def test_reads_are_filtered_and_do_not_grow_with_other_nodes():
    small, big = FakeServer(_fleet(2)), FakeServer(_fleet(200))
    got_small = read_reparent_entries(small, OLD, NEW, SERVER)
    got_big = read_reparent_entries(big, OLD, NEW, SERVER)
    assert all(r for r in small.reads + big.reads), "an unfiltered entry show reads the whole table"
    assert sorted(e["id"] for e in got_small) == sorted(e["id"] for e in got_big)
    assert sorted(e["id"] for e in got_big) == ["alias", "done", "m0", "m1", "m2", "m3", "m4"]


def test_filtered_plan_equals_the_plan_over_the_whole_table():
    table = _fleet(20)
    fake = FakeServer(table)
    assert reparent_plan(fake, OLD, NEW, SERVER) == plan_reparent(table, OLD, NEW, SERVER)


def test_an_entry_matched_by_two_filters_is_read_once():
    e = _entry("1", "spiffe://example.org/w", OLD, ["unix:uid:1"])
    assert [x["id"] for x in read_reparent_entries(FakeServer([e]), OLD, OLD, SERVER)] == ["1"]


def test_apply_then_plan_again_is_empty_and_leaves_other_nodes_alone():
    fake = FakeServer(_fleet(3))
    before = {k: v for k, v in fake.table.items() if k.startswith("o")}
    apply_reparent(fake, reparent_plan(fake, OLD, NEW, SERVER))
    assert reparent_plan(fake, OLD, NEW, SERVER).empty
    assert {k: v for k, v in fake.table.items() if k.startswith("o")} == before
    assert len(fake.entries(parentID=NEW)) == 5 and not fake.entries(parentID=OLD)
    assert fake.table["alias"]["selectors"] == [{"type": "spiffe_id", "value": NEW}]
