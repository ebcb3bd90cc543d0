"""The traceability matrix: every section, step and checklist item of the guide,
and the scenarios that cover it.

``python -m spire_migration.records.traceability`` reads the guide (docs/guide/, a copy
of the shared guide) and the feature files, and writes docs/traceability.md.
``python -m spire_migration.records.traceability --check`` exits 1 when a guide item
has no scenario (and no written reason why none can exist), or when the map
below names a tag no scenario carries. tests/unit/test_traceability.py runs the
same check.

Guide items are found in the guide's text, never listed by hand:

* sections: every ``##`` / ``###`` heading (outside code blocks);
* steps: ``### Step N`` under "Step-by-Step Migration Instructions" (tag
  ``guide_step_N``) and under "Rollback Procedure" (``rollback_step_N``);
* checklist items: ``- [ ]`` under "Pre-Migration Checklist" (``pre_check_N``)
  and "Validation Checklist" (``post_check_N``);
* numbered items under "Security Hardening" (``hardening_N``), "After Migration",
  "During Migration";
* common issues: ``### Issue N`` (``issue_N``);
* validation commands: each command of the "Validation Commands" block.

Items whose tag is derived (above) need no entry in :data:`COVERAGE`; every
other item needs one: the tags of the scenarios that cover it, or a reason in
:data:`NOT_TESTABLE`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
GUIDE = PROJECT / "docs" / "guide" / "migration-guide-phase3-to-phase4.md"
FEATURES = PROJECT / "features"
OUTPUT = PROJECT / "docs" / "traceability.md"

STEPS = [f"guide_step_{i}" for i in range(1, 11)]
ROLLBACK = [f"rollback_step_{i}" for i in range(1, 5)]
POST = [f"post_check_{i}" for i in range(1, 11)]

#: Items without a derived tag: the scenario tags that cover them.
COVERAGE: dict[str, list[str]] = {
    # sections
    "Overview": STEPS,
    "Key Differences Between Phase 3 and Phase 4": ["pre_check_1", "post_check_3"],
    "Key Differences Between Phase 3 and Phase 4 / Phase 3 (Kubernetes SPIRE Integration)": ["pre_check_1"],
    "Key Differences Between Phase 3 and Phase 4 / Phase 4 (TPM-Integrated SPIRE)": ["post_check_3", "post_check_7"],
    "Prerequisites for Migration": ["pre_check_1", "pre_check_2"],
    "Prerequisites for Migration / Hardware Requirements": ["pre_check_2", "guide_step_2"],
    "Prerequisites for Migration / Software Requirements": ["pre_check_1", "guide_step_1"],
    "Configuration Changes": ["guide_step_4", "guide_step_8", "guide_step_9"],
    "Configuration Changes / 1. SPIRE Server Configuration": ["guide_step_4", "post_check_1"],
    "Configuration Changes / 2. SPIRE Agent Configuration": ["guide_step_4", "post_check_2"],
    "Configuration Changes / 3. Workload Registration": ["guide_step_8", "post_check_4", "hardening_3"],
    "Configuration Changes / 4. Python Application": ["guide_step_9", "post_check_9"],
    "Configuration Changes / 5. Kubernetes Deployment Manifest": ["guide_step_9", "post_check_5"],
    "Backward Compatibility Considerations": ["strategy_gradual"],
    "Backward Compatibility Considerations / Dual Attestation Support": ["strategy_gradual", "audit_1"],
    "Backward Compatibility Considerations / Workload Attestation Compatibility": ["post_check_4", "hardening_3",
                                                                                  "hardening_5"],
    "Backward Compatibility Considerations / Application Compatibility": ["post_check_5", "post_check_6"],
    "Migration Strategies": ["guide_step_1", "strategy_gradual"],
    "Migration Strategies / Strategy 1: Big Bang Migration (Recommended for Development)": STEPS,
    "Migration Strategies / Strategy 2: Gradual Migration (Recommended for Production)": ["strategy_gradual",
                                                                                         "audit_1"],
    "Post-Migration Validation / Validation Commands": POST,
    "Post-Migration Validation / Validation Checklist": POST,
    "Prerequisites for Migration / Pre-Migration Checklist": [f"pre_check_{i}" for i in range(1, 6)],
    "Best Practices": ["guide_step_3", "rollback_step_1", "after_migration", "hardening_1"],
    "Best Practices / During Migration": ["guide_step_3", "rollback_step_1"],
    "Best Practices / After Migration": ["after_migration", "hardening_3", "post_check_10"],
    "Best Practices / Security Hardening": [f"hardening_{i}" for i in range(1, 6)],
    # numbered practices
    "During Migration 2: Backup Everything": ["guide_step_3", "audit_4"],
    "During Migration 3: Document Changes": STEPS,
    "During Migration 4: Monitor Closely": ["post_check_8", "post_check_10"],
    "During Migration 5: Have Rollback Plan": ROLLBACK,
    "After Migration 1: Remove Join Token Attestor": ["after_migration", "audit_1"],
    "After Migration 2: Document TPM Configuration": ["hardening_2", "hardening_3"],
    "After Migration 5: Monitor Performance": ["post_check_10"],
    # the guide's validation commands
    "Validation command: pgrep -a spire": ["post_check_1", "post_check_2"],
    "Validation command: sudo ./verify_tpm.sh": ["post_check_7"],
    "Validation command: sudo /opt/spire/bin/spire-server agent list": ["post_check_3", "post_check_7"],
    "Validation command: sudo /opt/spire/bin/spire-server entry show": ["post_check_4", "hardening_5"],
    "Validation command: kubectl get pods -l app=mtls-demo": ["post_check_5"],
    "Validation command: kubectl logs <pod-name>": ["post_check_9"],
    "Validation command: tail -50 /opt/spire/server.log": ["post_check_8"],
    "Validation command: tail -50 /opt/spire/agent.log": ["post_check_8", "post_check_7"],
    "Validation command: tpm2_pcrread sha256": ["hardening_3"],
}

#: Items no scenario can prove, and why (kept short and honest).
NOT_TESTABLE: dict[str, str] = {
    "Additional Resources": "links to documentation; nothing to prove on a node",
    "Support": "where to ask for help; its commands are covered by post_check_7/8 and pre_check_2",
    "Common Migration Issues": "an index; each issue is covered below",
    "Rollback Procedure": "an index; each rollback step is covered below",
    "Step-by-Step Migration Instructions": "an index; each step is covered below",
    "Post-Migration Validation": "an index; the checklist and commands are covered below",
    "Migration Strategies / Strategy 3: Parallel Deployment": "a second cluster and trust domain; outside one node's migration",
    "During Migration 1: Test in Development First": "an organisational practice; the swtpm lab (tests/lab) is that development run",
    "After Migration 3: Update Runbooks": "an organisational practice (docs), not node state",
    "After Migration 4: Train Team": "an organisational practice, not node state",
}


@dataclass
class GuideItem:
    key: str
    kind: str               # section, step, checklist, practice, issue, command
    line: int
    tags: list[str] = field(default_factory=list)   # derived tags


@dataclass
class Scenario:
    feature: str
    name: str
    tags: set[str]
    line: int


def _strip(text: str) -> str:
    return re.sub(r"\*\*|`", "", text).strip()


def parse_guide(text: str) -> list[GuideItem]:
    """Every item of the guide, in order."""
    items: list[GuideItem] = []
    h2 = h3 = ""
    in_code = False
    checklist = numbered = 0
    code_lines: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("```"):
            if in_code and h3 == "Validation Commands":
                for at, cmd in code_lines:
                    items.append(GuideItem(f"Validation command: {cmd}", "command", at))
            in_code, code_lines = not in_code, []
            continue
        if in_code:
            if line.strip() and not line.strip().startswith("#"):
                code_lines.append((lineno, line.strip()))
            continue
        if line.startswith("## "):
            h2, h3, checklist, numbered = _strip(line[3:]), "", 0, 0
            items.append(GuideItem(h2, "section", lineno))
            continue
        if line.startswith("### "):
            h3, checklist, numbered = _strip(line[4:]), 0, 0
            key = f"{h2} / {h3}"
            m = re.match(r"Step (\d+):", h3)
            if m and h2.startswith("Step-by-Step"):
                items.append(GuideItem(key, "step", lineno, [f"guide_step_{m.group(1)}"]))
            elif m and h2.startswith("Rollback"):
                items.append(GuideItem(key, "step", lineno, [f"rollback_step_{m.group(1)}"]))
            elif (m := re.match(r"Issue (\d+):", h3)):
                items.append(GuideItem(key, "issue", lineno, [f"issue_{m.group(1)}"]))
            else:
                items.append(GuideItem(key, "section", lineno))
            continue
        if line.startswith("- [ ]"):
            checklist += 1
            tag = {"Pre-Migration Checklist": "pre_check", "Validation Checklist": "post_check"}.get(h3)
            items.append(GuideItem(f"{h3} {checklist}: {_strip(line[5:])}", "checklist", lineno,
                                   [f"{tag}_{checklist}"] if tag else []))
            continue
        m = re.match(r"^(\d+)\. \*\*(.+?)\*\*", line)
        if m and h3 in ("Security Hardening", "After Migration", "During Migration"):
            numbered += 1
            name = _strip(m.group(2)).rstrip(":")
            tags = [f"hardening_{m.group(1)}"] if h3 == "Security Hardening" else []
            items.append(GuideItem(f"{h3} {m.group(1)}: {name}", "practice", lineno, tags))
    return items


def parse_features(directory: Path = FEATURES) -> list[Scenario]:
    """Scenarios of the feature files with their tags (feature tags included)."""
    out: list[Scenario] = []
    for path in sorted(directory.glob("*.feature")):
        feature_tags: set[str] = set()
        pending: set[str] = set()
        seen_feature = False
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if line.startswith("@"):
                pending |= {t.lstrip("@") for t in line.split() if t.startswith("@")}
            elif line.startswith("Feature:"):
                feature_tags, pending, seen_feature = pending, set(), True
            elif re.match(r"(Scenario|Scenario Outline|Example):", line) and seen_feature:
                name = line.split(":", 1)[1].strip()
                out.append(Scenario(path.name, name, feature_tags | pending, lineno))
                pending = set()
    return out


def coverage(items: list[GuideItem], scenarios: list[Scenario]) -> dict[str, list[Scenario]]:
    cov: dict[str, list[Scenario]] = {}
    for item in items:
        tags = item.tags or COVERAGE.get(item.key, [])
        cov[item.key] = [s for s in scenarios if s.tags & set(tags)]
    return cov


def problems(items: list[GuideItem], scenarios: list[Scenario]) -> list[str]:
    """What makes the matrix incomplete: uncovered items, stale map entries."""
    out = []
    cov = coverage(items, scenarios)
    keys = {i.key for i in items}
    for item in items:
        if not cov[item.key] and item.key not in NOT_TESTABLE:
            why = (f"no scenario carries {item.tags}" if item.tags else
                   "no entry in COVERAGE or NOT_TESTABLE" if item.key not in COVERAGE
                   else f"no scenario carries any of {COVERAGE[item.key]}")
            out.append(f"guide line {item.line}: {item.key!r} has no scenario ({why})")
    all_tags = set().union(*(s.tags for s in scenarios)) if scenarios else set()
    for key, tags in COVERAGE.items():
        if key not in keys:
            out.append(f"COVERAGE names {key!r}, which is not in the guide (renamed?)")
        missing = [t for t in tags if t not in all_tags]
        if missing:
            out.append(f"COVERAGE[{key!r}] names tags no scenario carries: {missing}")
    for key in NOT_TESTABLE:
        if key not in keys:
            out.append(f"NOT_TESTABLE names {key!r}, which is not in the guide (renamed?)")
    return out


def render(items: list[GuideItem], scenarios: list[Scenario], guide_name: str) -> str:
    cov = coverage(items, scenarios)
    lines = ["# Traceability: the migration guide and the scenarios that cover it", "",
             f"Generated by `python -m spire_migration.records.traceability` from `{guide_name}` and `features/*.feature`; "
             "do not edit by hand. `tests/unit/test_traceability.py` fails when a guide item has no scenario.", "",
             f"{len(items)} guide items; {sum(1 for i in items if cov[i.key])} covered by scenarios, "
             f"{sum(1 for i in items if not cov[i.key] and i.key in NOT_TESTABLE)} not testable (reason given).", "",
             "| guide line | kind | guide item | scenarios (tag · feature · scenario) |", "|---|---|---|---|"]
    for item in items:
        found = cov[item.key]
        if found:
            tags = set(item.tags or COVERAGE.get(item.key, []))
            cells = "<br>".join(f"`@{' @'.join(sorted(s.tags & tags))}` · {s.feature} · {s.name}" for s in found)
        else:
            cells = f"not testable: {NOT_TESTABLE.get(item.key, '**MISSING**')}"
        lines.append(f"| {item.line} | {item.kind} | {item.key.replace('|', '/')} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spire_migration.records.traceability")
    parser.add_argument("--guide", type=Path, default=GUIDE)
    parser.add_argument("--features", type=Path, default=FEATURES)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when an item has no scenario")
    args = parser.parse_args(argv)
    items = parse_guide(args.guide.read_text())
    scenarios = parse_features(args.features)
    issues = problems(items, scenarios)
    for issue in issues:
        print(f"traceability: {issue}", file=sys.stderr)
    if not args.check:
        try:
            name = args.guide.resolve().relative_to(PROJECT)
        except ValueError:
            name = args.guide
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render(items, scenarios, str(name)))
        print(args.output)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
