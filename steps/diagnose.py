"""The guide's Common Migration Issues: read-only diagnoses, one per issue."""

from __future__ import annotations

import pytest
from pytest_bdd import parsers, then, when

from spire_migration.checks import diagnose
from spire_migration.checks.diagnose import Diagnosis
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node
from spire_migration.verdict import CheckResult


@when(parsers.re(r"the node is diagnosed for issue (?P<n>\d)(?:, .*)?$"), target_fixture="diagnosis")
def _diagnose(node: Node, n: str, journal_readonly: Journal | None, set_fact) -> Diagnosis:
    issue = int(n)
    if issue == 1:
        d = diagnose.issue1_attestation(node)
    elif issue == 2:
        d = diagnose.issue2_parent_not_found(node)
    elif issue == 3:
        d = diagnose.issue3_pcr_changed(node, journal_readonly)
    else:
        d = diagnose.issue4_performance(node)
    set_fact(f"issue_{issue}", {"cause": d.cause, "summary": d.summary, "warnings": d.warnings, **d.data})
    print(d.text())
    return d


@then("the diagnosis finds no fault")
def _no_fault(diagnosis: Diagnosis, record) -> None:
    record(CheckResult(f"Issue {diagnosis.issue}: {diagnosis.title}", not diagnosis.fault,
                       "no fault", f"{diagnosis.cause}: {diagnosis.summary}",
                       {"evidence": diagnosis.evidence, "warnings": diagnosis.warnings, **diagnosis.data},
                       " / ".join(diagnosis.resolution)))
    if diagnosis.cause == "not_applicable":
        pytest.skip(f"not applicable: {diagnosis.summary}")
    assert not diagnosis.fault, diagnosis.text()
