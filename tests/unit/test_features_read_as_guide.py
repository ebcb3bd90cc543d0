"""The feature files read as the guide's executable version.

Every sentence has exactly one step definition; no sentence hides its step
behind a number; every scenario's description quotes the guide (`...` quotes
are checked against the guide's text), says where real SPIRE differs and what
the suite does instead.
"""

from __future__ import annotations

import importlib
import re
import pytest
from pytest_bdd.parser import FeatureParser
from pytest_bdd.steps import step_function_context_registry

from fixtures import suite
from spire_migration.records import traceability as tr

LABELS = ("The guide:", "Real SPIRE:", "The suite:")


def _scenarios():
    for path in sorted(tr.FEATURES.glob("*.feature")):
        feature = FeatureParser(str(path.parent), path.name).parse()
        yield from ((path.name, s) for s in feature.scenarios.values())


SCENARIOS = list(_scenarios())
IDS = [f"{f}:{s.name}" for f, s in SCENARIOS]


def _step_definitions():
    for name in suite.pytest_plugins:
        if name.startswith("steps."):
            importlib.import_module(name)
    return [d for d in step_function_context_registry.values() if d.step_func.__module__.startswith("steps.")]


def _paragraphs(description: str) -> dict[str, str]:
    """The description's labelled paragraphs: label -> its text (continuation lines joined)."""
    out: dict[str, str] = {}
    label = None
    for line in description.splitlines():
        line = line.strip()
        label = next((lab for lab in LABELS if line.startswith(lab)), label)
        if label:
            out[label] = (out.get(label, "") + " " + line).strip()
    return out


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\\\n", " ").replace("**", ""))


@pytest.mark.parametrize("feature,scenario", SCENARIOS, ids=IDS)
def test_every_sentence_has_exactly_one_step_definition(feature, scenario):
    definitions = _step_definitions()
    for step in scenario.steps:
        found = [d for d in definitions if d.type == step.type and d.parser.is_matching(step.name)]
        assert len(found) == 1, (f"{feature}:{step.line_number} {step.keyword} {step.name!r}: expected exactly one "
                                 f"{step.type} definition, found {[d.step_func.__module__ for d in found]}")


@pytest.mark.parametrize("feature,scenario", SCENARIOS, ids=IDS)
def test_no_sentence_hides_its_step_behind_a_number(feature, scenario):
    hidden = [s.name for s in scenario.steps if re.search(r"performs (guide|rollback) step \d", s.name)]
    assert not hidden, f"{feature}: name the action in the guide's terms, found {hidden}"


@pytest.mark.parametrize("feature,scenario", SCENARIOS, ids=IDS)
def test_the_description_quotes_the_guide_and_says_where_spire_differs(feature, scenario):
    paragraphs = _paragraphs(scenario.description or "")
    missing = [lab for lab in LABELS if not paragraphs.get(lab, "").removeprefix(lab).strip()]
    assert not missing, f"{feature}: {scenario.name!r}: expected description paragraphs {LABELS}, missing {missing}"
    guide = _normalised(tr.GUIDE.read_text())
    quotes = re.findall(r"`([^`]+)`", paragraphs["The guide:"])
    wrong = [q for q in quotes if _normalised(q) not in guide]
    assert not wrong, f"{feature}: {scenario.name!r} quotes what the guide does not say: {wrong}"


def test_a_misquote_of_the_guide_is_found():
    paragraphs = _paragraphs("The guide: `sudo pkill -f spire-agent`, `sudo rm -rf /opt/spire`.\n"
                             "Real SPIRE: x\nThe suite: y")
    guide = _normalised(tr.GUIDE.read_text())
    assert [q for q in re.findall(r"`([^`]+)`", paragraphs["The guide:"]) if _normalised(q) not in guide] \
        == ["sudo rm -rf /opt/spire"]


def test_every_step_definition_is_used():
    used = [s for _, sc in SCENARIOS for s in sc.steps]
    unused = [f"{d.step_func.__module__}.{d.step_func.__name__}: {d.parser.name!r}" for d in _step_definitions()
              if not any(d.type == s.type and d.parser.is_matching(s.name) for s in used)]
    assert not unused, f"dead step definitions: {unused}"


def test_the_scenarios_keep_the_guide_order_in_each_feature():
    numbered = re.compile(r"(?:guide_step|rollback_step|pre_check|post_check|hardening|audit|issue)_(\d+)")
    for feature in {f for f, _ in SCENARIOS} - {FLEET_AGENT, FLEET_ROLLBACK}:
        numbers = [int(m.group(1)) for f, s in SCENARIOS if f == feature
                   for m in map(numbered.fullmatch, sorted(s.tags)) if m]
        assert numbers == sorted(numbers), f"{feature}: scenarios out of the guide's order: {numbers}"


FLEET_AGENT = "10_fleet_agent_part.feature"
FLEET_ROLLBACK = "11_fleet_rollback.feature"


def test_the_fleet_rollback_keeps_its_parts_order_and_the_guide_order_on_the_node():
    """Its parts run token (server host), agent (node, rollback steps 1-4 in the guide's order),
    reparent (server host): spire_migration/cli.py ROLLBACK_PARTS."""
    from spire_migration.cli import ROLLBACK_PARTS

    scenarios = [s for f, s in SCENARIOS if f == FLEET_ROLLBACK]
    seen = [next(t.removeprefix("part_rollback_") for t in s.tags if t.startswith("part_rollback_")) for s in scenarios]
    assert sorted(set(seen), key=seen.index) == list(ROLLBACK_PARTS), f"{FLEET_ROLLBACK}: parts in the order {seen}"
    node = [int(t.removeprefix("rollback_step_")) for s in scenarios if "part_rollback_agent" in s.tags
            for t in s.tags if t.startswith("rollback_step_")]
    assert node == [1, 2, 3, 4]


def test_the_fleet_agent_part_keeps_the_make_before_break_order():
    """Its scenarios depart from the guide's order on purpose: they follow the parts a node goes
    through (spire_migration/cli.py PARTS), make before the switch, break after it."""
    from spire_migration.cli import PARTS

    seen = [next(t.removeprefix("part_") for t in s.tags if t.startswith("part_"))
            for f, s in SCENARIOS if f == FLEET_AGENT]
    order = [p.replace("-", "_") for p in PARTS if p != "server"]
    assert sorted(set(seen), key=seen.index) == order, f"{FLEET_AGENT}: parts in the order {seen}"
    make, switch, brk = (seen.index(p) for p in ("make", "agent_switch", "break"))
    assert make < switch < brk


def test_the_documented_example_is_the_migration_feature():
    text = (tr.PROJECT / "docs" / "example-feature.md").read_text()
    block = text.split("```gherkin\n", 1)[1].split("```", 1)[0]
    assert block == (tr.FEATURES / "02_migration.feature").read_text(), \
        "docs/example-feature.md: paste features/02_migration.feature into its gherkin block"
