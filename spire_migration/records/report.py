"""Run summaries (JSON) and human reports (Markdown), secrets redacted."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spire_migration.fileio import write_file
from spire_migration.redact import redact, redact_obj
from spire_migration.verdict import CheckResult


@dataclass
class Run:
    """What one pytest run did."""

    started: float
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, list[CheckResult]] = field(default_factory=dict)
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
        "results": [{"scenario": s["name"], "tags": s["tags"], "status": s["status"], "reason": s["reason"],
                     "host": s.get("host", ""), "title": s.get("title", ""), "checks": [check_dict(c) for c in run.checks.get(nodeid, [])]}
                    for nodeid, s in run.scenarios.items()],
    }


def write_summary(run: Run, path: Path, exitstatus: int) -> None:
    write_file(path, json.dumps(redact_obj(summary_dict(run, exitstatus)), indent=2) + "\n")


_PHASE_TAGS = ("migrate", "validate", "rollback", "diagnose", "audit", "lab", "slow", "strategy_gradual",
               "after_migration", "fleet", "fleet_rollback")


def guide_id(tags: list[str]) -> str:
    """The scenario's guide reference tag (``post_check_3``, ``hardening_1``, ``audit_2`` ...).

    >>> guide_id(["post_check_3", "validate"]), guide_id(["audit", "audit_4", "validate"])
    ('post_check_3', 'audit_4')
    """
    refs = [t for t in tags if t not in _PHASE_TAGS and not t.startswith("part_")]
    return refs[0] if refs else (tags[0] if tags else "")


def check_status(check: CheckResult) -> str:
    if not check.ok:
        return "failed"
    return "passed with warnings" if check.warnings else "passed"


def check_properties(check: CheckResult) -> list[tuple[str, str]]:
    """JUnit <property> pairs of one check: expected, found, evidence, warnings, remedy (redacted)."""
    props = [(f"{check.title} | status", check_status(check)),
             (f"{check.title} | expected", redact(check.expected)),
             (f"{check.title} | found", redact(check.found))]
    if check.evidence:
        props.append((f"{check.title} | evidence",
                      json.dumps(redact_obj(check.evidence), default=str, sort_keys=True)))
    for w in check.warnings:
        props.append((f"{check.title} | warning", redact(w)))
    if not check.ok and check.remedy:
        props.append((f"{check.title} | remedy", redact(check.remedy)))
    return props


def check_dict(check: CheckResult) -> dict[str, Any]:
    return {"title": check.title, "status": check_status(check), "expected": check.expected,
            "found": check.found, "evidence": check.evidence, "warnings": list(check.warnings),
            "remedy": check.remedy if not check.ok else ""}


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    out = []
    for key, value in evidence.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        if "\n" in text:   # a config diff: a fenced block keeps its lines
            out += [f"    - {key}:", "", "      ```", *(f"      {ln}" for ln in text.rstrip("\n").splitlines()),
                    "      ```", ""]
        else:
            out.append(f"    - {key}: `{text}`")
    return out


def write_markdown(run: Run, path: Path) -> None:
    """The human report: per scenario its guide ID, host, status, and every check with its
    expected, found, evidence, warnings and (when failed) the remedy."""
    lines = ["# SPIRE migration report", "",
             f"Run started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(run.started))}."]
    if run.facts.get("phase"):
        lines.append(f"Phase of the target node: {run.facts['phase']}.")
    counts = run.counts()
    warned = sum(1 for nodeid, s in run.scenarios.items() if s["status"] == "passed"
                 and any(c.warnings for c in run.checks.get(nodeid, [])))
    lines += ["", " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
              + f" · passed with warnings: {warned}", ""]
    lines += ["| ID | host | scenario | status |", "|---|---|---|---|"]
    for nodeid, s in run.scenarios.items():
        status = s["status"]
        if status == "passed" and any(c.warnings for c in run.checks.get(nodeid, [])):
            status = "passed with warnings"
        lines.append(f"| {guide_id(s['tags'])} | {s.get('host') or '-'} | {s.get('title') or s['name']} | {status} |")
    for nodeid, scenario in run.scenarios.items():
        host = f" [{scenario['host']}]" if scenario.get("host") else ""
        lines += ["", f"## {guide_id(scenario['tags'])}{host}: {scenario.get('title') or scenario['name']} — "
                  f"{scenario['status']}", "",
                  f"Tags: {' '.join('@' + t for t in scenario['tags'])}", ""]
        if scenario["reason"]:
            lines += ["```", scenario["reason"], "```", ""]
        for c in run.checks.get(nodeid, []):
            lines += [f"- **{c.title}**: {check_status(c)}",
                      f"  - expected: {c.expected}", f"  - found: {c.found}"]
            if c.evidence:
                lines.append("  - evidence:")
                lines += _evidence_lines(c.evidence)
            for w in c.warnings:
                lines.append(f"  - warning: {w}")
            if not c.ok and c.remedy:
                lines.append(f"  - remedy: {c.remedy}")
    if run.changes:
        lines += ["", "## Changes", ""] + [f"- {c}" for c in run.changes]
    write_file(path, redact("\n".join(lines)) + "\n", mode=0o600)


def terminal_lines(run: Run) -> list[str]:
    counts = run.counts()
    out = ["", "spire-migration: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()),
           f"spire-migration: {len(run.changes)} change(s)"]
    out += [f"  - {redact(c)}" for c in run.changes[:50]]
    if run.facts.get("summary_path"):
        out.append(f"spire-migration: summary {run.facts['summary_path']}")
    return out
