"""The traceability matrix is complete: every guide item has a scenario (or a stated reason)."""

from pathlib import Path

import pytest

from spire_migration.records import traceability as tr

SHARED = Path("/work/shared/guide/migration-guide-phase3-to-phase4.md")


def test_every_guide_item_has_a_scenario():
    items = tr.parse_guide(tr.GUIDE.read_text())
    scenarios = tr.parse_features()
    assert not tr.problems(items, scenarios), "\n".join(tr.problems(items, scenarios))


def test_the_checklists_and_steps_are_found_in_the_guide():
    items = tr.parse_guide(tr.GUIDE.read_text())
    tags = {t for i in items for t in i.tags}
    assert {f"pre_check_{i}" for i in range(1, 6)} <= tags
    assert {f"post_check_{i}" for i in range(1, 11)} <= tags
    assert {f"guide_step_{i}" for i in range(1, 11)} <= tags
    assert {f"hardening_{i}" for i in range(1, 6)} <= tags
    assert sum(1 for i in items if i.kind == "command") == 9


def test_a_new_guide_item_without_scenario_fails():
    text = tr.GUIDE.read_text().replace("- [ ] Performance is acceptable",
                                        "- [ ] Performance is acceptable\n- [ ] Coffee is hot")
    issues = tr.problems(tr.parse_guide(text), tr.parse_features())
    assert any("Coffee is hot" in i and "post_check_11" in i for i in issues), issues


def test_the_generated_matrix_lists_every_guide_item():
    items = tr.parse_guide(tr.GUIDE.read_text())
    text = tr.OUTPUT.read_text()
    missing = [i.key for i in items if f"| {i.line} | {i.kind} |" not in text]
    assert not missing, f"regenerate docs/traceability.md (python -m spire_migration.records.traceability): {missing}"


@pytest.mark.skipif(not SHARED.exists(), reason="the shared guide is not on this machine")
def test_the_guide_copy_is_the_shared_guide():
    assert tr.GUIDE.read_text() == SHARED.read_text(), f"copy {SHARED} to {tr.GUIDE}"
