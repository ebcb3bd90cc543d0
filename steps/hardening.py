"""The guide's Security Hardening list: thin steps over spire_migration.checks.hardening, per host."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then

from spire_migration.checks import hardening
from spire_migration.node.facade import Node

from .common import bind_thens, require


@given("the audited node")
def _audited(audited: Node, set_fact) -> Node:
    set_fact("_target", audited.target)
    return audited


bind_thens(rows=(
    ("the TPM device node or socket is accessible only by the agent's user",
     hardening.tpm_access_restricted, "audited"),
    ("the agent uses the TPM resource manager or a socket that serialises access",
     hardening.resource_manager_preferred, "audited"),
    ("every PCR a registration depends on has its expected value recorded and unchanged",
     hardening.pcr_usage_documented, "audited"),
    ("every entry that depends on PCR values is listed with the update procedure",
     hardening.pcr_update_procedure, "audited"),
))


@then("attestation records and this run's reports are available to auditors")
def _h4(audited: Node, pytestconfig: pytest.Config, record) -> None:
    opt = pytestconfig.option
    outputs = {"report": getattr(opt, "report", None), "junitxml": getattr(opt, "xmlpath", None),
               "cucumberjson": getattr(opt, "cucumber_json_path", None), "summary": getattr(opt, "summary", None)}
    require(record(hardening.audits_possible(audited, outputs)))
