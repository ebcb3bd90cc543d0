"""Run summaries (JSON) and human reports (Markdown), secrets redacted."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import write_atomic
from .redact import redact, redact_obj


@dataclass
class Run:
    """What one pytest run did."""

    started: float
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, list[Any]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    wrote_journal: bool = False

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "not_run": 0, "not_applicable": 0}
        for s in self.scenarios.values():
            out[s["status"]] = out.get(s["status"], 0) + 1
        return out


def summary_dict(run: Run, exitstatus: int) -> dict[str, Any]:
    facts = {k: v for k, v in run.facts.items() if not k.startswith("_")}
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started)),
        "duration_s": round(time.time() - run.started, 3),
        "exit_status": exitstatus,
        "phase": facts.pop("phase", None),
        "scenarios": run.counts(),
        "changes": run.changes,
        "change_count": len(run.changes),
        "facts": facts,
        "results": [{"scenario": s["name"], "tags": s["tags"], "status": s["status"], "reason": s["reason"]}
                    for s in run.scenarios.values()],
    }


def write_summary(run: Run, path: Path, exitstatus: int) -> None:
    write_atomic(path, json.dumps(redact_obj(summary_dict(run, exitstatus)), indent=2) + "\n")


def write_markdown(run: Run, path: Path) -> None:
    lines = ["# SPIRE migration report", "",
             f"Run started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(run.started))}.", ""]
    counts = run.counts()
    lines.append(" · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
    lines += ["", "| scenario | guide tags | status |", "|---|---|---|"]
    for s in run.scenarios.values():
        lines.append(f"| {s['name']} | {' '.join(t for t in s['tags'])} | {s['status']} |")
    for nodeid, scenario in run.scenarios.items():
        lines += ["", f"## {scenario['name']} — {scenario['status']}", ""]
        if scenario["reason"]:
            lines += ["```", scenario["reason"], "```", ""]
        for c in run.checks.get(nodeid, []):
            lines += [f"- **{c.title}**: {'passed' if c.ok else 'FAILED'}",
                      f"  - expected: {c.expected}", f"  - found: {c.found}"]
            if c.evidence:
                lines.append(f"  - evidence: `{json.dumps(c.evidence, default=str)}`")
            if not c.ok and c.remedy:
                lines.append(f"  - remedy: {c.remedy}")
    if run.changes:
        lines += ["", "## Changes", ""] + [f"- {c}" for c in run.changes]
    write_atomic(path, redact("\n".join(lines)) + "\n", mode=0o600)


def terminal_lines(run: Run) -> list[str]:
    counts = run.counts()
    out = ["", "spire-migration: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()),
           f"spire-migration: {len(run.changes)} change(s)"]
    out += [f"  - {redact(c)}" for c in run.changes[:50]]
    if run.facts.get("summary_path"):
        out.append(f"spire-migration: summary {run.facts['summary_path']}")
    return out
