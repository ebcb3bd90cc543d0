"""The fleet report: one row per agent node of a fleet run (fleet/migrate.yml), Markdown and JSON.

Reads one run's folder on the controller, as the playbook leaves it::

    waves.json                    {"run": ID, "waves": [["node-1"], ["node-2", ...], ...]}
    server/<part>.json            run summaries of the server host (server, finalize)
    nodes/<node>/<part>.json      run summaries of each part (agent-prepare, make, agent-switch,
                                  break, agent-finish), fetched from the host that ran it
    nodes/<node>/handoff.json     the node's handoff (old agent ID redacted, new agent ID)
    nodes/<node>/start.json       {"t": epoch seconds} when the node's first part started,
    nodes/<node>/end.json         ... when its last part ended (absent after a stop)

and writes ``fleet-report.md`` and ``fleet-report.json`` there: per node its wave, phase
before and after, agent ID before and after (join_token IDs redacted), duration and result;
the run's totals. A stopped run is reported as it stands (the failed part, the nodes not
started). ``python -m spire_migration.records.fleet_report RUN_DIR`` (the playbook's last
play, or by hand after a stop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spire_migration.fileio import write_file
from spire_migration.redact import redact, redact_obj

#: The agent node's parts, in the order the playbook runs them.
AGENT_PARTS = ("agent-prepare", "make", "agent-switch", "break", "agent-finish")
SERVER_PARTS = ("server", "finalize")


@dataclass
class NodeRow:
    """One agent node of the run."""

    node: str
    wave: int | None
    phase_before: str
    phase_after: str
    agent_before: str
    agent_after: str
    duration_s: float | None
    result: str
    changes: int
    parts: dict[str, int]   # part -> exit status, for the parts that ran


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fact(summary: dict[str, Any] | None, *keys: str) -> str:
    """The first of ``keys`` the summary holds (top level, then its facts), as text."""
    if not summary:
        return ""
    for key in keys:
        value = summary.get(key) if key == "phase" else (summary.get("facts") or {}).get(key)
        if value:
            return str(value)
    return ""


def _handoff_id(handoff: dict[str, Any] | None, which: str) -> str:
    """The handoff's ``old``/``new`` agent ID, whatever the key's exact spelling."""
    for key, value in (handoff or {}).items():
        if which in key.lower() and "agent" in key.lower() and isinstance(value, str):
            return value
    return ""


def result_of(summaries: dict[str, dict[str, Any]], finished: bool) -> str:
    """What happened to a node, from the parts that ran (in the playbook's order)."""
    if not summaries:
        return "not started"
    for part in AGENT_PARTS:
        s = summaries.get(part)
        if s is not None and int(s.get("exit_status", 1)) != 0:
            return f"failed at {part} (exit {s.get('exit_status')})"
    ran = [p for p in AGENT_PARTS if p in summaries]
    if not finished:   # make and break are skipped on a node that wrote no handoff (already in Phase 4)
        return f"stopped after {ran[-1]}"
    changes = sum(int(s.get("change_count", 0)) for s in summaries.values())
    return "migrated" if changes else "unchanged (already migrated)"


def node_row(folder: Path, wave: int | None) -> NodeRow:
    summaries = {p: s for p in AGENT_PARTS if (s := _load(folder / f"{p}.json")) is not None}
    handoff = _load(folder / "handoff.json")
    start, end = _load(folder / "start.json"), _load(folder / "end.json")
    ordered = [summaries[p] for p in AGENT_PARTS if p in summaries]
    first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
    if start and end:
        duration: float | None = round(float(end["t"]) - float(start["t"]), 1)
    else:
        duration = round(sum(float(s.get("duration_s", 0)) for s in ordered), 1) if ordered else None
    after_src = next((s for s in reversed(ordered) if _fact(s, "agent_after")), None)
    return NodeRow(
        node=folder.name, wave=wave,
        phase_before=_fact(first, "phase_before", "phase"),
        phase_after=_fact(last, "phase", "phase_after") if ordered else "",
        agent_before=redact(_handoff_id(handoff, "old") or _fact(first, "agent_before")),
        agent_after=redact(_fact(after_src, "agent_after") or _handoff_id(handoff, "new")),
        duration_s=duration, result=result_of(summaries, end is not None),
        changes=sum(int(s.get("change_count", 0)) for s in ordered),
        parts={p: int(summaries[p].get("exit_status", 1)) for p in AGENT_PARTS if p in summaries})


def build(run_dir: Path) -> dict[str, Any]:
    """The report of one run folder, as a dict (what fleet-report.json holds)."""
    plan = _load(run_dir / "waves.json") or {}
    wave_of = {n: i for i, wave in enumerate(plan.get("waves") or [], 1) for n in wave}
    nodes_dir = run_dir / "nodes"
    names = list(wave_of) + sorted(p.name for p in nodes_dir.glob("*") if p.is_dir() and p.name not in wave_of)
    rows = [node_row(nodes_dir / n, wave_of.get(n)) for n in names]
    server = {p: {"exit_status": s.get("exit_status"), "changes": s.get("change_count", 0),
                  "duration_s": s.get("duration_s"), "phase": s.get("phase")}
              for p in SERVER_PARTS if (s := _load(run_dir / "server" / f"{p}.json")) is not None}
    times = [float(t["t"]) for n in names for f in ("start.json", "end.json")
             if (t := _load(nodes_dir / n / f)) is not None]
    totals = {"nodes": len(rows),
              "migrated": sum(r.result == "migrated" for r in rows),
              "unchanged": sum(r.result.startswith("unchanged") for r in rows),
              "failed": sum(r.result.startswith("failed") for r in rows),
              "stopped": sum(r.result.startswith("stopped") for r in rows),
              "not_started": sum(r.result == "not started" for r in rows),
              "changes": sum(r.changes for r in rows) + sum(int(s["changes"] or 0) for s in server.values()),
              "wall_s": round(max(times) - min(times), 1) if len(times) > 1 else None}
    return redact_obj({"run": plan.get("run", run_dir.name), "waves": plan.get("waves") or [],
                       "server": server, "nodes": [asdict(r) for r in rows], "totals": totals})


def markdown(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [f"# Fleet migration report — run {report['run']}", "",
             f"{t['nodes']} nodes: {t['migrated']} migrated, {t['unchanged']} unchanged, {t['failed']} failed, "
             f"{t['stopped']} stopped, {t['not_started']} not started; {t['changes']} changes"
             + (f"; {t['wall_s']} s from the first node's start to the last node's end" if t["wall_s"] else "")
             + ".", ""]
    for part, s in report["server"].items():
        lines.append(f"- server host, part {part}: exit {s['exit_status']}, {s['changes']} changes, "
                     f"{s['duration_s']} s")
    lines += ["", "| wave | node | phase before | phase after | agent ID before | agent ID after | duration | "
              "result |", "|---|---|---|---|---|---|---|---|"]
    for r in report["nodes"]:
        duration = "-" if r["duration_s"] is None else f"{r['duration_s']} s"
        lines.append(f"| {r['wave'] or '-'} | {r['node']} | {r['phase_before'] or '-'} | {r['phase_after'] or '-'} | "
                     f"{r['agent_before'] or '-'} | {r['agent_after'] or '-'} | {duration} | {r['result']} |")
    return redact("\n".join(lines)) + "\n"


def write(run_dir: Path, md: Path | None = None, js: Path | None = None) -> dict[str, Any]:
    report = build(run_dir)
    write_file(js or run_dir / "fleet-report.json", json.dumps(report, indent=2) + "\n", mode=0o600)
    write_file(md or run_dir / "fleet-report.md", markdown(report), mode=0o600)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spire_migration.records.fleet_report",
                                description="The fleet report of one run folder of fleet/migrate.yml.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--markdown", type=Path, help="default: RUN_DIR/fleet-report.md")
    p.add_argument("--json", type=Path, help="default: RUN_DIR/fleet-report.json")
    args = p.parse_args(argv)
    if not (args.run_dir / "waves.json").is_file():
        print(f"fleet-report: {args.run_dir}/waves.json not found: expected the run folder of a "
              f"fleet/migrate.yml run (<spire_report_dir>/runs/<run>)", file=sys.stderr)
        return 4
    t0 = time.monotonic()
    report = write(args.run_dir, args.markdown, args.json)
    t = report["totals"]
    print(f"fleet-report: {t['nodes']} nodes, {t['migrated']} migrated, {t['unchanged']} unchanged, "
          f"{t['failed']} failed, {t['stopped']} stopped, {t['not_started']} not started, {t['changes']} changes "
          f"({time.monotonic() - t0:.2f} s): {args.markdown or args.run_dir / 'fleet-report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
