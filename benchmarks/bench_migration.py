"""Benchmark, in a fresh lab: migrate and validate wall time, and re-registration at scale.

    python benchmarks/bench_migration.py [--sizes 100,1000,10000] [--loop-cap N] [--out FILE]

Measures (wall clock, this machine):
  * lab provisioning (reported, not counted), ``pytest -m migrate`` and ``pytest -m validate``;
  * re-parenting N entries with the suite (batched ``entry create -data`` / ``entry delete -file``)
    against the guide's loop (one ``entry delete`` and one ``entry create`` CLI call per entry), in
    the same run, on the same server. With ``--loop-cap`` the loop runs on the first CAP entries
    only and its time is extrapolated linearly (marked ``extrapolated`` in the JSON).
Targets (issue 3): migrate < 30 s, validate < 5 s, 10,000 entries < 60 s and >= 20x the loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from lab import core  # noqa: E402
from lab.layout import private_base  # noqa: E402
from spire_migration import services  # noqa: E402
from spire_migration.procedures.reregister import apply_reparent, plan_reparent  # noqa: E402
from spire_migration.config.target import Target  # noqa: E402

PARENT_A = "spiffe://example.org/bench/parent-a"
PARENT_B = "spiffe://example.org/bench/parent-b"
PARENT_C = "spiffe://example.org/bench/parent-c"


def _suite(target: Path, marker: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", marker, "--target", str(target), "-q",
                           "-p", "no:cacheprovider"], cwd=PROJECT, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest -m {marker} failed:\n{proc.stdout[-3000:]}")
    return elapsed


def _bench_entries(t: Target, n: int, loop_cap: int | None) -> dict:
    server = services.server_cli(t)
    seed = [{"spiffe_id": f"spiffe://example.org/bench/w{i}", "parent_id": PARENT_A,
             "selectors": [{"type": "unix", "value": f"uid:{10000 + i}"}], "x509_svid_ttl": 3600,
             "dns_names": [f"w{i}.bench.example.org"], "hint": "bench"} for i in range(n)]
    res = server.create_entries(seed)
    assert not res.failed, res.failed[:3]

    t0 = time.monotonic()
    plan = plan_reparent(server.entries(), PARENT_A, PARENT_B, t.server_id)
    apply_reparent(server, plan)
    suite_s = time.monotonic() - t0
    moved = [e for e in server.entries() if e["parent_id"]["path"] == "/bench/parent-b"]
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
    left = [e["id"] for e in server.entries() if e["parent_id"]["path"].startswith("/bench/")]
    server.delete_entries(left)
    return {"entries": n, "suite_s": round(suite_s, 2), "guide_loop_s": round(loop_s, 2),
            "speedup": round(loop_s / suite_s, 1), "loop_entries_run": loop_n,
            "extrapolated": loop_n < n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--loop-cap", type=int, default=None)
    ap.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results.json")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lab-bench-", dir=private_base()))
    out: dict = {"machine": {"nproc": __import__("os").cpu_count()}, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        t0 = time.monotonic()
        target = core.up(root, log=lambda m: None)
        out["lab_up_s"] = round(time.monotonic() - t0, 2)
        out["validate_phase3_s"] = round(_suite(target, "validate"), 2)
        out["migrate_s"] = round(_suite(target, "migrate"), 2)
        out["migrate_again_s"] = round(_suite(target, "migrate"), 2)
        out["validate_phase4_s"] = round(_suite(target, "validate"), 2)
        t = Target.load(target)
        out["reregistration"] = [_bench_entries(t, int(n), args.loop_cap) for n in args.sizes.split(",")]
    finally:
        core.down(root, purge=True, log=lambda m: None)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
