"""Beyond the guide, what an auditor asks: thin steps over spire_migration.checks.audit, per host."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then

from spire_migration.checks import audit
from spire_migration.node.facade import Node, Phase

from .common import bind_thens, require


@given("the audited node is in Phase 4")
def _audited_phase4(audited: Node) -> None:
    phase = audited.phase()
    if phase not in (Phase.PHASE4, Phase.TRANSITION, Phase.UNKNOWN):
        pytest.skip(f"not applicable: {audited.view.name} is in {phase.value}, this check is for Phase 4")


def _local_only(audited: Node, what: str) -> None:
    if not audited.view.is_local:
        pytest.skip(f"not applicable on {audited.view.name}: {what} is read where the suite runs; "
                    "run the suite on that node for it")


bind_thens(rows=(
    ("the server has no join_token attestor once no join_token agent remains",
     audit.join_token_attestor_retired, "audited"),
    ("no join token is left in the agent's config, flags or files",
     audit.no_join_token_left, "audited"),
    ('the agent\'s KeyManager is "disk"',
     audit.agent_keymanager_disk, "audited"),
    ("the journal and its backups are readable by root only",
     audit.journal_root_only, "audited"),
    ("the DevID certificate chains to the configured DevID CA and is not expiring",
     audit.devid_cert_valid, "audited"),
    ("the trust bundle and the server CA are not expiring",
     audit.trust_bundle_valid, "audited"),
))


@then("the EK certificate chains to the endorsement CA")
def _a6(audited: Node, record) -> None:
    _local_only(audited, "the TPM (tpm2-pytss)")
    require(record(audit.ek_cert_valid(audited)))
