"""The fleet parts (features 09 and 10): the Given picks the part the scenario's tag names,
each When performs one step of it, each Then proves it (spire_migration/checks/fleet_proofs.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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


def handoff_text(pytestconfig: pytest.Config, parts: str, name: str) -> str:
    """The text of ``--handoff FILE`` (the node's ``name``), which the server-host ``parts`` need."""
    path = pytestconfig.getoption("--handoff")
    if not path:
        raise TargetError(f"the {parts} parts need the node's {name}", expected="--handoff FILE",
                          found="none", remedy=f"copy the node's {name} to the server host and pass it")
    return Path(path).read_text()


def not_this_node(node: str, target: Target) -> None:
    if node == target.node:
        raise TargetError("the handoff names the server host's own node", expected="an agent node's name",
                          found=node, remedy="give each host its own node name in its target")


def server_journal_of(target: Target, node: str, plan_only: bool) -> Iterator[Journal]:
    """The server host's journal of an agent node, locked (a plan takes no lock)."""
    journal = Journal(target.journal.dir / node)
    if plan_only:
        yield journal
        return
    with journal.lock():
        yield journal


def part_class(request: pytest.FixtureRequest, parts: dict[str, type], target: Target, plan_only: bool,
               set_fact) -> type:
    """The class of the part the scenario's tag names (one of ``parts``)."""
    tag = next((t for t in parts if request.node.get_closest_marker(t)), None)
    set_fact("_target", target)
    set_fact("plan", plan_only)
    if tag is None:
        raise TargetError("a fleet scenario without a part tag", expected=" or ".join(parts), found="none")
    return parts[tag]


@pytest.fixture(scope="session")
def handoff(pytestconfig: pytest.Config, target: Target) -> Handoff:
    """The node's handoff (``--handoff FILE``), checked against the server host's target."""
    h = Handoff.parse(handoff_text(pytestconfig, "make and break", "handoff.json"), target.trust_domain,
                      target.attestor.profile)
    not_this_node(h.node, target)
    return h


@pytest.fixture(scope="session")
def handoff_journal(target: Target, handoff: Handoff, plan_only: bool) -> Iterator[Journal]:
    """The server host's journal of the handoff's node (its make and break), locked."""
    yield from server_journal_of(target, handoff.node, plan_only)


@given("the fleet migration part of the target node", target_fixture="migration")
def _part(request: pytest.FixtureRequest, target: Target, plan_only: bool, set_fact):
    """The part the scenario's tag names, on the journal it works with."""
    kind = part_class(request, PARTS, target, plan_only, set_fact)
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


def bind_part_whens(rows: Iterable[tuple[str, str]], *, part: str, outcome: str, prefix: str,
                    facts: Callable[[Any, str, Any, Callable[[str, Any], None]], None]) -> None:
    """Bind each row ``(sentence, method)`` as the When that runs ``method`` of the ``part``
    fixture, records its changes as ``<prefix>_<method>`` and its facts(part, method, result,
    set_fact), and returns its StepResult as the ``outcome`` fixture. Call it at the top of a
    step module: the steps are registered in that module."""
    for sentence, method in rows:
        _bind_part_when(sentence, method, part, outcome, prefix, facts)


def _bind_part_when(sentence: str, method: str, part: str, outcome: str, prefix: str, facts) -> None:
    @when(sentence, target_fixture=outcome, stacklevel=3)
    def _step(request: pytest.FixtureRequest, record_changes, set_fact):
        run = request.getfixturevalue(part)
        result = getattr(run, method)()
        record_changes(f"{prefix}_{method.strip('_')}", result.changes)
        facts(run, method, result, set_fact)
        return result


def _facts(migration, method: str, result, set_fact) -> None:
    if method == "agent_verify":
        set_fact("phase_before", migration.agent_phase().value)
        set_fact("agent_before", migration.journal.fact("old_agent_id"))
    if method in ("agent_switch", "step10_verify"):
        set_fact("agent_after", migration.new_agent_id())
        set_fact("phase", migration.agent_phase().value)


bind_part_whens(WHEN, part="migration", outcome="outcome", prefix="fleet", facts=_facts)

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
