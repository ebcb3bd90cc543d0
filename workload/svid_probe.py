#!/usr/bin/env python3
"""SVID availability probe: fetch an X.509 SVID through the Workload API every ``--interval`` seconds.

    SPIFFE_ENDPOINT_SOCKET=unix:///path/api.sock python svid_probe.py --out FILE [--interval 0.1] [--timeout 0.5]

Each attempt is one JSON line in ``--out`` (flushed at once), with ``t`` the CLOCK_MONOTONIC time of the
attempt's start (one clock for the whole machine, containers included, so a harness can place the
attempts against its own timings), ``w`` the same as Unix time (to read beside SPIRE's logs), ``ok``, ``ms`` (the attempt's duration), and on success the SVID's
``spiffe_id``, ``serial`` (hex) and ``expiry`` (the agent-issued ``notAfter``, ISO 8601), on failure
``error`` (exception type and first line). Each attempt uses a fresh client (its own gRPC channel), so
a restarted agent is seen as soon as its socket answers, not after gRPC's reconnect backoff. The first
line is ``{"start": ..., "pid": ...}``. SIGTERM (or SIGINT) ends the loop after the current attempt;
the last line is ``{"stop": ...}``. It runs as the workload (its uid or its container's labels), so the
agent gives it the workload's SVID. No key material is written: IDs, serials and times only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import IO, Any

SOCKET_ENV = "SPIFFE_ENDPOINT_SOCKET"
#: failed attempts listed one by one in a summary (the rest are counted)
MAX_FAILURES = 12


def attempt(socket: str, timeout: float) -> dict[str, Any]:
    """One fetch with a fresh client: the attempt's record (without ``t``)."""
    from spiffe import WorkloadApiClient  # imported once, before the first attempt, by run()

    t0 = time.monotonic()
    try:
        client = WorkloadApiClient(socket_path=socket)
        try:
            svid = client.fetch_x509_svid(timeout=timeout)
        finally:
            client.close()
        leaf = svid.leaf
        return {"ok": True, "ms": round(1000 * (time.monotonic() - t0), 1), "spiffe_id": str(svid.spiffe_id),
                "serial": format(leaf.serial_number, "x"), "expiry": leaf.not_valid_after_utc.isoformat()}
    except Exception as exc:  # noqa: BLE001 - every failure is a data point, never a crash
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"ok": False, "ms": round(1000 * (time.monotonic() - t0), 1), "error": f"{type(exc).__name__}: {first}"}


def run(out: IO[str], socket: str, interval: float, timeout: float) -> int:
    """Probe until SIGTERM/SIGINT; one line per attempt; returns the number of attempts."""
    stop = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    import spiffe  # noqa: F401 - the import's second or so is not an attempt's
    start = time.monotonic()
    out.write(json.dumps({"start": start, "pid": os.getpid(), "interval": interval, "timeout": timeout}) + "\n")
    out.flush()
    n = 0
    while not stop:
        t = time.monotonic()
        out.write(json.dumps({"t": round(t, 4), "w": round(time.time(), 3), **attempt(socket, timeout)}) + "\n")
        out.flush()
        n += 1
        # a fixed cadence: attempt k starts at start + k * interval (at once when an attempt overran)
        next_t = start + n * interval
        while not stop and (left := next_t - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
    out.write(json.dumps({"stop": time.monotonic(), "attempts": n}) + "\n")
    out.flush()
    return n


def read_records(path: str) -> list[dict[str, Any]]:
    """The attempt lines of a probe file (start/stop lines and a torn last line left out)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "t" in rec:
                out.append(rec)
    return out


def summarise(records: list[dict[str, Any]], t_from: float, t_to: float) -> dict[str, Any]:
    """SVID availability over the window [t_from, t_to] (monotonic seconds).

    ``longest_gap_s``: the longest time between two consecutive successful fetches, counted for
    every pair that overlaps the window (a gap that opened before it counts); ``longest_failure_run``:
    the most consecutive failed attempts in the window and the seconds from the first of them to
    the next success (or to the last attempt when none followed); ``longest_gap_at_s``: the gap's
    last success before and first success after it, in seconds from ``t_from``; ``failed``: failed attempts in
    the window. ``serials``: the distinct SVID serials seen in the window, in order."""
    recs = sorted(records, key=lambda r: r["t"])
    inside = [r for r in recs if t_from <= r["t"] <= t_to]
    oks = [r["t"] for r in recs if r["ok"]]
    pairs = [(a, b) for a, b in zip(oks, oks[1:]) if b >= t_from and a <= t_to]
    gaps = [b - a for a, b in pairs]
    widest = max(pairs, key=lambda p: p[1] - p[0]) if pairs else None
    run, best, best_s, run_start = 0, 0, 0.0, None
    for r in inside + [None]:
        if r is not None and not r["ok"]:
            run_start = r["t"] if run == 0 else run_start
            run += 1
            continue
        if run:
            end = r["t"] if r is not None else inside[-1]["t"]
            if run > best:
                best, best_s = run, end - run_start
        run = 0
    serials: list[str] = []
    for r in inside:
        if r["ok"] and r["serial"] not in serials:
            serials.append(r["serial"])
    errors: dict[str, int] = {}
    for r in inside:
        if not r["ok"]:
            kind = r["error"].split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    return {"window_s": round(t_to - t_from, 2), "attempts": len(inside),
            "ok": sum(1 for r in inside if r["ok"]), "failed": sum(1 for r in inside if not r["ok"]),
            "longest_gap_s": round(max(gaps), 3) if gaps else None,
            "longest_gap_at_s": [round(x - t_from, 2) for x in widest] if widest else None,
            "longest_failure_run": {"attempts": best, "s": round(best_s, 3)},
            "serials": serials, "spiffe_ids": sorted({r["spiffe_id"] for r in inside if r["ok"]}),
            "errors": errors,
            "failures": [{"at_s": round(r["t"] - t_from, 2), "ms": r["ms"], "error": r["error"][:120]}
                         for r in inside if not r["ok"]][:MAX_FAILURES]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON-lines file (appended to)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between attempts (default 0.1)")
    ap.add_argument("--timeout", type=float, default=0.5, help="deadline of each fetch in seconds (default 0.5)")
    args = ap.parse_args(argv)
    socket = os.environ.get(SOCKET_ENV, "")
    if not socket.startswith("unix://"):
        print(f"{SOCKET_ENV} must be unix:///path/to/api.sock, found {socket!r}", file=sys.stderr)
        return 4
    with open(args.out, "a", encoding="utf-8") as out:
        run(out, socket, args.interval, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
