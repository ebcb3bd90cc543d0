"""The guide's Security Hardening list: thin steps over spire_migration.hardening, per host."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then

from fixtures.fleet import Audited
from spire_migration import audit, hardening

from .common import require


@given("the audited node")
def _audited(audited: Audited, set_fact) -> Audited:
    set_fact("_target", audited.target)
    return audited


def _entries(audited: Audited) -> list[dict]:
    """The entries of this host's agent (and its node aliases): what its PCR checks are about."""
    ident = audit.agent_id_via(audited.view, audited.target)
    return audit.entries_of_agent(audited.node.entries, ident, audited.target.server_id)


@then("the TPM device node or socket is accessible only by the agent's user")
def _h1(audited: Audited, record) -> None:
    require(record(hardening.tpm_access_restricted(audited.view, audited.target)))


@then("the agent uses the TPM resource manager or a socket that serialises access")
def _h2(audited: Audited, record) -> None:
    require(record(hardening.resource_manager_preferred(audited.view, audited.target)))


@then("every PCR a registration depends on has its expected value recorded and unchanged")
def _h3(audited: Audited, record) -> None:
    require(record(hardening.pcr_usage_documented(audited.view, audited.target, _entries(audited),
                                                  audited.journal)))


@then("attestation records and this run's reports are available to auditors")
def _h4(audited: Audited, pytestconfig: pytest.Config, record) -> None:
    opt = pytestconfig.option
    outputs = {"report": getattr(opt, "report", None), "junitxml": getattr(opt, "xmlpath", None),
               "cucumberjson": getattr(opt, "cucumber_json_path", None), "summary": getattr(opt, "summary", None)}
    require(record(hardening.audits_possible(audited.view, audited.target, audited.journal, outputs)))


@then("every entry that depends on PCR values is listed with the update procedure")
def _h5(audited: Audited, record) -> None:
    require(record(hardening.pcr_update_procedure(audited.view, audited.target, _entries(audited),
                                                  audited.journal)))
