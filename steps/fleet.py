"""The fleet parts (features 09 and 10): the Given picks the part the scenario's tag names,
each When performs one step of it, each Then proves it (spire_migration/checks/fleet_proofs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_bdd import given, when

from spire_migration.checks import fleet_proofs as proofs
from spire_migration.config.target import Target
from spire_migration.errors import TargetError
from spire_migration.procedures.parts import AgentPart, Handoff, Registration, ServerPart
from spire_migration.records.journal import Journal

from .common import bind_thens

#: part tag -> the class that performs it
PARTS = {"part_server": ServerPart, "part_agent_prepare": AgentPart, "part_agent_switch": AgentPart,
         "part_agent_finish": AgentPart, "part_make": Registration, "part_break": Registration}


@pytest.fixture(scope="session")
def handoff(pytestconfig: pytest.Config, target: Target) -> Handoff:
    """The node's handoff (``--handoff FILE``), checked against the server host's target."""
    path = pytestconfig.getoption("--handoff")
    if not path:
        raise TargetError("the make and break parts need the node's handoff", expected="--handoff FILE",
                          found="none", remedy="copy the node's handoff.json to the server host and pass it")
    h = Handoff.parse(Path(path).read_text(), target.trust_domain, target.attestor.profile)
    if h.node == target.node:
        raise TargetError("the handoff names the server host's own node", expected="an agent node's name",
                          found=h.node, remedy="give each host its own node name in its target")
    return h


@pytest.fixture(scope="session")
def handoff_journal(target: Target, handoff: Handoff, plan_only: bool) -> Iterator[Journal]:
    """The server host's journal of the handoff's node (its make and break), locked."""
    journal = Journal(target.journal.dir / handoff.node)
    if plan_only:
        yield journal
        return
    with journal.lock():
        yield journal


@given("the fleet migration part of the target node", target_fixture="migration")
def _part(request: pytest.FixtureRequest, target: Target, plan_only: bool, set_fact):
    """The part the scenario's tag names, on the journal it works with."""
    tag = next((t for t in PARTS if request.node.get_closest_marker(t)), None)
    set_fact("_target", target)
    set_fact("plan", plan_only)
    if tag is None:
        raise TargetError("a fleet scenario without a part tag", expected=" or ".join(PARTS), found="none")
    kind = PARTS[tag]
    if kind is Registration:
        return Registration(target, request.getfixturevalue("handoff_journal"),
                            request.getfixturevalue("handoff"), plan=plan_only, log=print)
    return kind(target, request.getfixturevalue("run_journal"), plan=plan_only, log=print)


#: When sentence -> the part's method it performs
WHEN = (
    ("the server host is verified: server.conf readable, the TPM attestor's CA bundles present, the server healthy",
     "server_verify"),
    ("server.conf and every registration entry are backed up into the server host's journal", "server_backup"),
    ("the TPM node attestor is added to server.conf next to join_token on the server host", "server_configure"),
    ("spire-server alone is restarted with the dual-mode config and polled healthy", "server_restart"),
    ("the node is verified: its agent healthy and attested by join_token, its workload VERIFIED", "agent_verify"),
    ("the node's TPM device is probed as detect_tpm.sh would", "step2_verify_tpm"),
    ("agent.conf is backed up into the node's journal", "agent_backup"),
    ("agent.conf names the TPM node attestor alone and the handoff for the server host is written",
     "agent_configure"),
    ("the node's entries are made for its new agent ID on the server host", "make"),
    ("the node's agent is restarted without a join token and its TPM attestation verified", "agent_switch"),
    ("the node's old agent is retired on the server host once its new agent is TPM-attested", "break_"),
    ("the node's Phase 4 workload is deployed through its runtime", "step9_deploy"),
    ("the node's workload is checked end to end: its SVID fetch and its mTLS exchange", "step10_verify"),
)


def _bind(sentence: str, method: str) -> None:
    @when(sentence, target_fixture="outcome", stacklevel=2)
    def _step(migration, record_changes, set_fact):
        result = getattr(migration, method)()
        record_changes(f"fleet_{method.strip('_')}", result.changes)
        if method == "agent_verify":
            set_fact("phase_before", migration.agent_phase().value)
            set_fact("agent_before", migration.journal.fact("old_agent_id"))
        if method in ("agent_switch", "step10_verify"):
            set_fact("agent_after", migration.new_agent_id())
            set_fact("phase", migration.agent_phase().value)
        return result


for _sentence, _method in WHEN:
    _bind(_sentence, _method)

bind_thens(outcome="outcome", rows=(
    ("every agent the server listed before its restart is listed after it", proofs.agents_kept, "migration"),
    ("the node's journal holds agent.conf with its sha256, readable by root only",
     proofs.agent_conf_backed_up, "migration"),
    ("the handoff names the node, its redacted old agent ID and its new agent ID, and holds no secret",
     proofs.handoff_written, "migration"),
    ("every entry of the node's old agent has its copy for the new agent ID",
     proofs.made_for_new_agent, "migration outcome"),
    ("no entry refers to the node's old agent and it is evicted", proofs.old_agent_retired, "migration outcome"),
    ("the node's agent ID is the TPM attestor's ID, proven by its own bundle and key",
     proofs.node_tpm_agent_id, "migration"),
))
