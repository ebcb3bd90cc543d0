"""The guide's Security Hardening list: thin steps over spire_migration.checks.hardening, per host."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then

from spire_migration.checks import hardening
from spire_migration.node.facade import Node

from .common import require


@given("the audited node")
def _audited(audited: Node, set_fact) -> Node:
    set_fact("_target", audited.target)
    return audited


@then("the TPM device node or socket is accessible only by the agent's user")
def _h1(audited: Node, record) -> None:
    require(record(hardening.tpm_access_restricted(audited)))


@then("the agent uses the TPM resource manager or a socket that serialises access")
def _h2(audited: Node, record) -> None:
    require(record(hardening.resource_manager_preferred(audited)))


@then("every PCR a registration depends on has its expected value recorded and unchanged")
def _h3(audited: Node, record) -> None:
    require(record(hardening.pcr_usage_documented(audited)))


@then("attestation records and this run's reports are available to auditors")
def _h4(audited: Node, pytestconfig: pytest.Config, record) -> None:
    opt = pytestconfig.option
    outputs = {"report": getattr(opt, "report", None), "junitxml": getattr(opt, "xmlpath", None),
               "cucumberjson": getattr(opt, "cucumber_json_path", None), "summary": getattr(opt, "summary", None)}
    require(record(hardening.audits_possible(audited, outputs)))


@then("every entry that depends on PCR values is listed with the update procedure")
def _h5(audited: Node, record) -> None:
    require(record(hardening.pcr_update_procedure(audited)))
