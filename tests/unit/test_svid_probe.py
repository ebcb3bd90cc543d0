"""The SVID availability probe (issue 12.5): its records and the figures drawn from them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spire_migration.retry import poll
from workload import svid_probe

PROBE = Path(svid_probe.__file__)


def _rec(t: float, ok: bool, serial: str = "a") -> dict:
    if ok:
        return {"t": t, "ok": True, "ms": 1.0, "spiffe_id": "spiffe://example.org/w", "serial": serial,
                "expiry": "2026-12-02T07:00:00+00:00"}
    return {"t": t, "ok": False, "ms": 1.0, "error": "ArgumentError: no socket"}


def test_summarise_gap_failure_run_and_serials() -> None:
    recs = [_rec(0.0, True), _rec(0.1, True), _rec(0.2, False), _rec(0.3, False), _rec(0.4, False),
            _rec(0.5, True, "b"), _rec(0.6, True, "b"), _rec(0.7, False), _rec(0.8, True, "b")]
    s = svid_probe.summarise(recs, 0.05, 0.85)
    assert s["failed"] == 4 and s["ok"] == 4 and s["attempts"] == 8
    assert s["longest_gap_s"] == 0.4                        # 0.1 -> 0.5
    assert s["longest_failure_run"] == {"attempts": 3, "s": 0.3}   # 0.2 -> next success at 0.5
    assert s["serials"] == ["a", "b"] and s["errors"] == {"ArgumentError": 4}


def test_summarise_counts_a_gap_opened_before_the_window_and_one_never_closed() -> None:
    recs = [_rec(0.0, True), _rec(1.0, False), _rec(2.0, False), _rec(3.0, True)]
    assert svid_probe.summarise(recs, 1.5, 2.5)["longest_gap_s"] == 3.0
    s = svid_probe.summarise([_rec(0.0, True), _rec(1.0, False), _rec(2.0, False)], 0.5, 2.5)
    assert s["longest_gap_s"] is None and s["longest_failure_run"] == {"attempts": 2, "s": 1.0}


def test_probe_records_failures_without_an_agent_and_stops_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    env = {**os.environ, svid_probe.SOCKET_ENV: f"unix://{tmp_path / 'missing.sock'}"}
    proc = subprocess.Popen([sys.executable, str(PROBE), "--out", str(out), "--timeout", "0.2"], env=env)
    try:
        poll(lambda: len(svid_probe.read_records(str(out))) >= 3, timeout=30, what="three attempts")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert "start" in lines[0] and "stop" in lines[-1]
    recs = svid_probe.read_records(str(out))
    assert recs and not any(r["ok"] for r in recs) and all(r["error"] for r in recs)
    ts = [r["t"] for r in recs]
    assert all(b > a for a, b in zip(ts, ts[1:]))


def test_probe_refuses_a_missing_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != svid_probe.SOCKET_ENV}
    r = subprocess.run([sys.executable, str(PROBE), "--out", str(tmp_path / "p")], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 4 and svid_probe.SOCKET_ENV in r.stderr
