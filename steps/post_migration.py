"""The guide's Post-Migration Validation checklist: thin steps over spire_migration.checks.postmigration."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from spire_migration.checks import postmigration
from spire_migration.records.journal import Journal
from spire_migration.node.logs import parse_time
from spire_migration.node.facade import Node

from .common import bind_thens

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


bind_thens(rows=(
    ("the SPIRE server runs with the TPM node attestor",
     postmigration.server_with_tpm_attestor, "node"),
    ("the SPIRE agent runs with the TPM node attestor and no other",
     postmigration.agent_with_tpm_attestor_only, "node"),
    ("the agent ID contains the TPM attestor path",
     postmigration.agent_id_is_tpm, "node"),
    ("every workload entry has the TPM agent as parent",
     postmigration.workloads_under_right_parent, "node"),
    ("the workload instances run and fetch their SVID",
     postmigration.workloads_fetch_svids, "node workload_check"),
    ("an mTLS exchange between the workload's client and server is verified",
     postmigration.mtls_works, "node workload_check"),
    ("the checks of verify_tpm.sh pass: agent ID, TPM attestation type and selectors, "
     "the attestation in the agent log",
     postmigration.tpm_attestation_verified, "node"),
    ("the SPIRE logs hold no error since the migration",
     postmigration.no_errors_in_logs, "node journal_facts logs_reviewed_until"),
    ("the workload logs show successful operation since the deploy",
     postmigration.workload_logs_success, "node journal_facts"),
    ("the SVID fetch latency is under the target's threshold",
     postmigration.performance, "node workload_check"),
))
