"""The guide's Pre-Migration Checklist: read-only checks on a Phase 3 node."""

from __future__ import annotations

from pytest_bdd import then

from spire_migration.checks import premigration
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node

from .common import bind_thens, require


bind_thens(rows=(
    ("the SPIRE server is running and healthy",
     premigration.server_running, "node"),
    ("the SPIRE agent is running and healthy",
     premigration.agent_running, "node"),
    ("the workload entry is registered under the agent",
     premigration.workload_entry_under_agent, "node"),
    ("the workload fetched an SVID and logged VERIFIED",
     premigration.workload_verified, "node"),
    ("the TPM is a TPM 2.0 with a sha256 PCR bank at the configured path",
     premigration.tpm_usable, "node"),
    ("every critical workload is registered",
     premigration.critical_workloads_registered, "node"),
    ("the current registrations are listed with their count",
     premigration.registrations_known, "node"),
))


@then("the agent is attested by join_token")
def _agent_join_token(node: Node, record) -> None:
    require(record(premigration.agent_attested_by(node, "join_token")))


@then("a backup exists or is planned")
def _backup_ready(node: Node, journal_readonly: Journal | None, record) -> None:
    backups = journal_readonly.data["backups"] if journal_readonly else {}
    require(record(premigration.backup_ready(node, backups)))
