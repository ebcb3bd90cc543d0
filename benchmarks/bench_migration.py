"""Benchmark, in a fresh lab: migrate and validate wall time, and re-registration at scale.

    python benchmarks/bench_migration.py [--sizes 100,1000,10000] [--loop-cap N] [--out FILE]
        [--datastore sqlite3|postgres] [--others N] [--sqlite-analyze] [--skip-suite] [--root-prefix P]

Measures (wall clock, this machine; the load average is recorded with every figure):
  * lab provisioning (reported, not counted), ``pytest -m migrate`` and ``pytest -m validate``
    (``--skip-suite`` leaves these out);
  * re-parenting N entries with the suite (filtered ``entry show``, batched ``entry create -data`` /
    ``entry delete -file``, several batches in flight) against the guide's loop (one ``entry delete``
    and one ``entry create`` CLI call per entry), in the same run, on the same server. With
    ``--loop-cap`` the loop runs on the first CAP entries only and its time is extrapolated linearly
    (marked ``extrapolated`` in the JSON). Per size: the time of each phase (read, create, delete),
    the cost per entry, and the CPU seconds of spire-server (and of PostgreSQL) during the move;
  * ``--others N``: N unrelated entries (20 per parent, as other nodes of a fleet would have) stay in
    the table for every size; ``--datastore postgres``: the lab's server on a private PostgreSQL.
Targets (issue 3): migrate < 30 s, validate < 5 s, 10,000 entries < 60 s and >= 20x the loop;
(issue 12): cost per entry flat from 1k to 20k entries, 10k entries <= 12 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from lab import configs, core, postgres  # noqa: E402
from lab.layout import Layout, private_base  # noqa: E402
from spire_migration.node import services, spire  # noqa: E402
from spire_migration.procedures.reregister import apply_reparent, reparent_plan  # noqa: E402
from spire_migration.node.spire import SpireServer  # noqa: E402
from spire_migration.config.target import Target  # noqa: E402

PARENT_A = "spiffe://example.org/bench/parent-a"
PARENT_B = "spiffe://example.org/bench/parent-b"
PARENT_C = "spiffe://example.org/bench/parent-c"
PER_OTHER_PARENT = 20


def _suite(target: Path, marker: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", marker, "--target", str(target), "-q",
                           "-p", "no:cacheprovider"], cwd=PROJECT, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest -m {marker} failed:\n{proc.stdout[-3000:]}")
    return elapsed


class _Timed:
    """The server CLI with the wall time of each entry call summed by method."""

    TIMED = ("entries", "create_entries", "delete_entries", "update_entries")

    def __init__(self, server: SpireServer) -> None:
        self.server = server
        self.spent: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.server, name)
        if name not in self.TIMED:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            try:
                return attr(*args, **kwargs)
            finally:
                self.spent[name] += time.monotonic() - t0
        return timed


def _cpu_s(pid: int | None, children: bool = False) -> float:
    """CPU seconds of ``pid`` (with ``children``: also its reaped and its live children)."""
    if not pid:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p: int) -> list[str]:
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return []
    own = stat(pid)
    total = sum(int(x) for x in own[11:15 if children else 13])
    if children:
        for d in Path("/proc").iterdir():
            f = stat(int(d.name)) if d.name.isdigit() else []
            if f and int(f[1]) == pid:
                total += int(f[11]) + int(f[12])
    return total / tick


def _entries(n: int, parent: str, first: int = 0, prefix: str = "w") -> list[dict]:
    return [{"spiffe_id": f"spiffe://example.org/bench/{prefix}{i}", "parent_id": parent,
             "selectors": [{"type": "unix", "value": f"uid:{10000 + i}"}], "x509_svid_ttl": 3600,
             "dns_names": [f"{prefix}{i}.bench.example.org"], "hint": "bench"} for i in range(first, first + n)]


def _seed_others(server: SpireServer, n: int) -> float:
    t0 = time.monotonic()
    seed = [e for j in range(0, n, PER_OTHER_PARENT)
            for e in _entries(min(PER_OTHER_PARENT, n - j), f"spiffe://example.org/bench/other/node-{j // PER_OTHER_PARENT}",
                              first=j, prefix="o")]
    res = server.create_entries(seed)
    assert not res.failed, res.failed[:3]
    return round(time.monotonic() - t0, 2)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _bench_entries(t: Target, n: int, loop_cap: int | None, cpu: Callable[[], dict[str, float]],
                   analyze: Path | None = None) -> dict:
    server = services.server_cli(t)
    res = server.create_entries(_entries(n, PARENT_A))
    assert not res.failed, res.failed[:3]
    if analyze:
        with sqlite3.connect(analyze) as db:
            db.execute("ANALYZE")

    t0 = time.monotonic()
    table = len(server.entries())   # what the suite read before (the whole table): for comparison only
    full_read_s = time.monotonic() - t0
    timed, load_before, cpu_before = _Timed(server), _load(), cpu()
    t0 = time.monotonic()
    apply_reparent(timed, reparent_plan(timed, PARENT_A, PARENT_B, t.server_id))
    suite_s = time.monotonic() - t0
    cpu_after, load_after = cpu(), _load()
    moved = server.entries(parentID=PARENT_B)
    assert len(moved) == n, f"expected {n} re-parented entries, found {len(moved)}"

    loop_n = min(n, loop_cap) if loop_cap else n
    t0 = time.monotonic()
    for e in moved[:loop_n]:   # the guide: entry delete, then entry create, per entry
        server.run("entry", "delete", "-entryID", e["id"])
        sel = e["selectors"][0]
        server.run("entry", "create", "-parentID", PARENT_C, "-spiffeID",
                   f"spiffe://{e['spiffe_id']['trust_domain']}{e['spiffe_id']['path']}",
                   "-selector", f"{sel['type']}:{sel['value']}", "-x509SVIDTTL", "3600",
                   "-dns", e["dns_names"][0], "-hint", "bench")
    loop_s = (time.monotonic() - t0) * (n / loop_n)
    left = [e["id"] for p in (PARENT_A, PARENT_B, PARENT_C) for e in server.entries(parentID=p)]
    server.delete_entries(left)
    return {"entries": n, "suite_s": round(suite_s, 2), "per_entry_ms": round(1000 * suite_s / n, 3),
            "table_entries": table, "read_s": round(timed.spent["entries"], 2),
            "whole_table_read_s": round(full_read_s, 2), "create_s": round(timed.spent["create_entries"], 2),
            "delete_s": round(timed.spent["delete_entries"], 2),
            "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after},
            "load_before": load_before, "load_after": load_after,
            "guide_loop_s": round(loop_s, 2), "speedup": round(loop_s / suite_s, 1), "loop_entries_run": loop_n,
            "extrapolated": loop_n < n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--loop-cap", type=int, default=None)
    ap.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results.json")
    ap.add_argument("--datastore", choices=configs.DATASTORES, default="sqlite3")
    ap.add_argument("--others", type=int, default=0, help="unrelated entries kept in the table (other nodes)")
    ap.add_argument("--sqlite-analyze", action="store_true",
                    help="run sqlite's ANALYZE on the lab server's datastore before each move (SPIRE never does): "
                         "shows what the query plan of SPIRE's duplicate check costs without statistics")
    ap.add_argument("--skip-suite", action="store_true", help="re-registration only: no pytest runs")
    ap.add_argument("--root-prefix", default="lab-bench-", help="the lab root is a fresh /tmp/<prefix>*")
    args = ap.parse_args()
    if args.sqlite_analyze and args.datastore != "sqlite3":
        ap.error("--sqlite-analyze needs --datastore sqlite3")
    root = Path(tempfile.mkdtemp(prefix=args.root_prefix, dir=private_base()))
    out: dict = {"machine": {"nproc": os.cpu_count(), "loadavg_start": list(os.getloadavg())},
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "datastore": args.datastore,
                 "other_entries": args.others,
                 "sqlite_analyze": args.sqlite_analyze, "batch": {"size": spire.BATCH, "workers": spire.WORKERS}}

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    try:
        t0 = time.monotonic()
        target = core.up(root, log=lambda m: None, datastore=args.datastore)
        out["lab_up_s"] = round(time.monotonic() - t0, 2)
        if not args.skip_suite:
            out["validate_phase3_s"] = round(_suite(target, "validate"), 2)
            out["migrate_s"] = round(_suite(target, "migrate"), 2)
            out["migrate_again_s"] = round(_suite(target, "migrate"), 2)
            out["validate_phase4_s"] = round(_suite(target, "validate"), 2)
        t = Target.load(target)
        pg = postgres.Cluster(Layout(root.resolve()).postgres_dir) if args.datastore == "postgres" else None

        def cpu() -> dict[str, float]:
            srv = services.server_proc(t)
            got = {"spire_server": _cpu_s(srv.pid if srv else None)}
            if pg:
                info = pg.running()
                got["postgres"] = _cpu_s(info.pid if info else None, children=True)
            return got
        if args.others:
            out["others_seed_s"] = _seed_others(services.server_cli(t), args.others)
        out["reregistration"] = []
        for n in args.sizes.split(","):
            analyze = t.server.data_dir / "datastore.sqlite3" if args.sqlite_analyze else None
            out["reregistration"].append(_bench_entries(t, int(n), args.loop_cap, cpu, analyze))
            save()
    finally:
        core.down(root, purge=True, log=lambda m: None)
    save()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
