"""Re-parenting: what moves, aliases, interruptions; it reads only what concerns the move (fleets)."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from spire_migration.node import spire
from spire_migration.errors import SpireError

from spire_migration.procedures.reregister import (apply_break, apply_make, apply_reparent, moved_content, plan_reparent, read_reparent_entries,
                                        reparent_plan)
from spire_migration.node.spire import BatchResult, SpireServer, id_str, selector_strs

OLD = "spiffe://example.org/spire/agent/join_token/1234abcd-0000-1111-2222-333344445555"
NEW = "spiffe://example.org/spire/agent/tpm_devid/ab12"
SERVER = "spiffe://example.org/spire/server"


def _id(s: str) -> dict:
    td, _, path = s.removeprefix("spiffe://").partition("/")
    return {"trust_domain": td, "path": "/" + path}


def _entry(eid: str, spiffe: str, parent: str, sels: list[str], **extra) -> dict:
    return {"id": eid, "spiffe_id": _id(spiffe), "parent_id": _id(parent),
            "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in sels], **extra}


def test_reparent_moves_every_entry_and_twins_aliases():
    entries = [
        _entry("1", "spiffe://example.org/k8s-workload", OLD, ["docker:label:a:b"], x509_svid_ttl=600,
               dns_names=["w.example.org"], hint="web", admin=True),
        _entry("2", "spiffe://example.org/agent", OLD, [f"spiffe_id:{OLD}"]),
        _entry("3", "spiffe://example.org/nodes/all", SERVER, [f"spiffe_id:{OLD}"]),
        _entry("4", "spiffe://example.org/other", "spiffe://example.org/spire/agent/join_token/zzzz", ["unix:uid:1"]),
    ]
    plan = plan_reparent(entries, OLD, NEW, SERVER)
    assert sorted(e["spiffe_id"] for e in plan.create) == ["spiffe://example.org/agent",
                                                            "spiffe://example.org/k8s-workload",
                                                            "spiffe://example.org/nodes/all"]
    workload = next(e for e in plan.create if e["spiffe_id"].endswith("k8s-workload"))
    assert workload["parent_id"] == NEW and workload["x509_svid_ttl"] == 600 and workload["admin"] is True
    assert workload["dns_names"] == ["w.example.org"] and workload["hint"] == "web"
    alias_under_agent = next(e for e in plan.create if e["spiffe_id"].endswith("/agent"))
    assert alias_under_agent["selectors"] == [{"type": "spiffe_id", "value": NEW}]
    twin = next(e for e in plan.create if e["spiffe_id"].endswith("/nodes/all"))   # make before break
    assert twin["parent_id"] == SERVER and twin["selectors"] == [{"type": "spiffe_id", "value": NEW}]
    assert plan.delete == ["1", "2", "3"]
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
    assert "alias" not in fake.table
    assert [id_str(e["spiffe_id"]) for e in fake.entries(parentID=SERVER, selector=f"spiffe_id:{NEW}")] == \
        ["spiffe://example.org/nodes"]


def test_make_serves_both_agents_and_break_refuses_before_make():
    fake = FakeServer(_fleet(1))
    plan = reparent_plan(fake, OLD, NEW, SERVER)
    with pytest.raises(SpireError, match="not deleted before their copies exist"):
        apply_break(fake, plan)
    assert len(fake.entries(parentID=OLD)) == 5, "break before make deleted entries"
    apply_make(fake, plan)
    assert len(fake.entries(parentID=OLD)) == 5 and len(fake.entries(parentID=NEW)) == 5
    assert fake.entries(parentID=SERVER, selector=f"spiffe_id:{OLD}")
    again = reparent_plan(fake, OLD, NEW, SERVER)
    assert again.made and sorted(again.delete) == sorted(plan.delete)
    apply_break(fake, again)
    assert not fake.entries(parentID=OLD) and not fake.entries(parentID=SERVER, selector=f"spiffe_id:{OLD}")


# -- batch calls -------------------------------------------------------------------
class _Batches(SpireServer):
    """The real batching over a fake CLI call: answers each chunk, or fails or drops results.
    With ``meet`` the first two calls wait for each other: they must be in flight together."""

    def __init__(self, fail_chunk: int | None = None, drop_last: bool = False, meet: bool = False) -> None:
        super().__init__(Path("/nonexistent/spire-server"), Path("/nonexistent/api.sock"))
        self.fail_chunk, self.drop_last = fail_chunk, drop_last
        self.meet = threading.Barrier(2, timeout=10) if meet else None
        self.calls: list[list[Any]] = []
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def _with_file(self, payload: dict[str, Any], *args: str) -> Any:
        (chunk,) = payload.values()
        with self.lock:
            self.calls.append(chunk)
            first_two = len(self.calls) <= 2
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.meet and first_two:
                self.meet.wait()   # BrokenBarrierError after 10 s when calls run one by one
            if self.fail_chunk is not None and chunk[0] == self.fail_chunk * spire.BATCH:
                raise SpireError("spire-server entry delete failed")
            results = [{"status": {"code": 0 if i % 7 else 3, "message": "bad"}, "entry": {"id": f"e{i}"}}
                       for i in chunk]
            return {"results": results[:-1] if self.drop_last else results}
        finally:
            with self.lock:
                self.in_flight -= 1


def test_batches_run_concurrently_and_results_keep_the_input_order():
    srv = _Batches(meet=True)
    res = srv._batch(list(range(10 * spire.BATCH)), "ids", ("entry", "delete", "-file"), str)
    assert 1 < srv.most_in_flight <= spire.WORKERS
    assert [e["id"] for e in res.ok] == [f"e{i}" for i in range(10 * spire.BATCH) if i % 7]
    assert [n for n, _ in res.failed] == [str(i) for i in range(10 * spire.BATCH) if not i % 7]


def test_a_missing_result_is_a_failure_not_a_success():
    res = _Batches(drop_last=True)._batch(list(range(3)), "ids", ("entry", "delete", "-file"), str)
    assert ("2", "no result returned for it") in res.failed and {"id": "e2"} not in res.ok


def test_a_failed_call_stops_the_chunks_not_yet_started(monkeypatch):
    monkeypatch.setattr(spire, "WORKERS", 1)
    srv = _Batches(fail_chunk=1)
    with pytest.raises(SpireError):
        srv._batch(list(range(20 * spire.BATCH)), "ids", ("entry", "delete", "-file"), str)
    assert [c[0] for c in srv.calls] == [0, spire.BATCH]


def test_a_join_token_agent_id_never_goes_on_the_command_line():
    """The ID carries the token: the server filters by it are applied here, on the whole table."""
    seen: list[tuple[str, ...]] = []

    class Recording(SpireServer):
        def json(self, *args, stdin=None):
            seen.append(args)
            return {"entries": [
                {"id": "a", "parent_id": "spiffe://td/spire/agent/join_token/tok-1", "spiffe_id": "spiffe://td/w",
                 "selectors": [{"type": "docker", "value": "label:x:y"}]},
                {"id": "b", "parent_id": "spiffe://td/spire/server", "spiffe_id": "spiffe://td/alias",
                 "selectors": [{"type": "spiffe_id", "value": "spiffe://td/spire/agent/join_token/tok-1"}]},
                {"id": "c", "parent_id": "spiffe://td/spire/agent/tpm_devid/abc", "spiffe_id": "spiffe://td/v",
                 "selectors": []}]}

    srv = Recording(Path("/bin/false"), Path("/tmp/none.sock"))
    jt = "spiffe://td/spire/agent/join_token/tok-1"
    assert [e["id"] for e in srv.entries(parentID=jt)] == ["a"]
    assert [e["id"] for e in srv.entries(parentID="spiffe://td/spire/server", selector=f"spiffe_id:{jt}")] == ["b"]
    assert not any("tok-1" in arg for args in seen for arg in args)
    srv.entries(parentID="spiffe://td/spire/agent/tpm_devid/abc")
    assert seen[-1] == ("entry", "show", "-parentID", "spiffe://td/spire/agent/tpm_devid/abc")
