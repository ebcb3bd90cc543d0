"""The guide's Post-Migration Validation checklist: thin steps over spire_migration.checks.postmigration."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pytest_bdd import then

from spire_migration.checks import postmigration
from spire_migration.records.journal import Journal
from spire_migration.node.logs import parse_time
from spire_migration.node.facade import Node

from .common import require

_CHECK = pytest.StashKey[dict]()


@pytest.fixture
def workload_check(request: pytest.FixtureRequest, node: Node) -> dict[str, Any]:
    """One run of the workload's `check` mode per run (post_check_5, 6 and 10 read the same)."""
    cache = request.config.stash.setdefault(_CHECK, {})
    key = str(node.target.source)
    if key not in cache:
        cache[key] = postmigration.workload_check(node)
    return cache[key]


@pytest.fixture
def journal_facts(journal_readonly: Journal | None) -> dict[str, Any]:
    return journal_readonly.data.get("facts", {}) if journal_readonly else {}


@pytest.fixture
def logs_reviewed_until(pytestconfig: pytest.Config) -> datetime | None:
    value = pytestconfig.getoption("--logs-since")
    if not value:
        return None
    when = parse_time(value)
    if when is None:
        pytest.exit(f"--logs-since {value!r}: expected an ISO 8601 time, e.g. 2026-01-02T03:04:05Z", returncode=4)
    return when.astimezone(timezone.utc)


@then("the SPIRE server runs with the TPM node attestor")
def _server(node: Node, record) -> None:
    require(record(postmigration.server_with_tpm_attestor(node)))


@then("the SPIRE agent runs with the TPM node attestor and no other")
def _agent(node: Node, record) -> None:
    require(record(postmigration.agent_with_tpm_attestor_only(node)))


@then("the agent ID contains the TPM attestor path")
def _agent_id(node: Node, record) -> None:
    require(record(postmigration.agent_id_is_tpm(node)))


@then("every workload entry has the TPM agent as parent")
def _entries(node: Node, record) -> None:
    require(record(postmigration.workloads_under_right_parent(node)))


@then("the workload instances run and fetch their SVID")
def _fetch(node: Node, workload_check: dict, record) -> None:
    require(record(postmigration.workloads_fetch_svids(node, workload_check)))


@then("an mTLS exchange between the workload's client and server is verified")
def _mtls(node: Node, workload_check: dict, record) -> None:
    require(record(postmigration.mtls_works(node, workload_check)))


@then("the checks of verify_tpm.sh pass: agent ID, TPM attestation type and selectors, "
      "the attestation in the agent log")
def _verify_tpm(node: Node, record) -> None:
    require(record(postmigration.tpm_attestation_verified(node)))


@then("the SPIRE logs hold no error since the migration")
def _logs(node: Node, journal_facts: dict, logs_reviewed_until, record) -> None:
    require(record(postmigration.no_errors_in_logs(node, journal_facts, logs_reviewed_until)))


@then("the workload logs show successful operation since the deploy")
def _workload_logs(node: Node, journal_facts: dict, record) -> None:
    require(record(postmigration.workload_logs_success(node, journal_facts)))


@then("the SVID fetch latency is under the target's threshold")
def _performance(node: Node, workload_check: dict, record) -> None:
    require(record(postmigration.performance(node, workload_check)))



