"""The guide's Pre-Migration Checklist: read-only checks on a Phase 3 node."""

from __future__ import annotations

from pytest_bdd import then

from spire_migration.checks import premigration
from spire_migration.records.journal import Journal
from spire_migration.node.facade import Node

from .common import require


@then("the SPIRE server is running and healthy")
def _server_running(node: Node, record) -> None:
    require(record(premigration.server_running(node)))


@then("the SPIRE agent is running and healthy")
def _agent_running(node: Node, record) -> None:
    require(record(premigration.agent_running(node)))


@then("the agent is attested by join_token")
def _agent_join_token(node: Node, record) -> None:
    require(record(premigration.agent_attested_by(node, "join_token")))


@then("the workload entry is registered under the agent")
def _workload_entry(node: Node, record) -> None:
    require(record(premigration.workload_entry_under_agent(node)))


@then("the workload fetched an SVID and logged VERIFIED")
def _workload_verified(node: Node, record) -> None:
    require(record(premigration.workload_verified(node)))


@then("the TPM is a TPM 2.0 with a sha256 PCR bank at the configured path")
def _tpm_usable(node: Node, record) -> None:
    require(record(premigration.tpm_usable(node)))


@then("every critical workload is registered")
def _critical_registered(node: Node, record) -> None:
    require(record(premigration.critical_workloads_registered(node)))


@then("a backup exists or is planned")
def _backup_ready(node: Node, journal_readonly: Journal | None, record) -> None:
    backups = journal_readonly.data["backups"] if journal_readonly else {}
    require(record(premigration.backup_ready(node, backups)))


@then("the current registrations are listed with their count")
def _registrations_known(node: Node, record) -> None:
    require(record(premigration.registrations_known(node)))
