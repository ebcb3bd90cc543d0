"""The proofs of the fleet parts (spire_migration/procedures/parts.py): what their Thens
assert, read from the host after the step ran, with evidence."""

from __future__ import annotations

import stat

from spire_migration.checks.migration_proofs import step_proof, this_run
from spire_migration.config import attestor
from spire_migration.node import services
from spire_migration.node.spire import id_str
from spire_migration.procedures.parts import AgentPart, Handoff, Registration, ServerPart, handoff_path
from spire_migration.procedures.reregister import reparent_plan
from spire_migration.redact import redact
from spire_migration.verdict import CheckResult, StepResult, guarded


@guarded
def agents_kept(run: ServerPart) -> CheckResult:
    """Every agent the server listed before its restart is listed after it."""
    before = run.journal.fact("agents_before_restart")
    now = [id_str(a["id"]) for a in services.server_cli(run.t).agents()]
    problems = [] if before is not None and len(now) >= before else [f"{before} before, {len(now)} now"]
    return step_proof("every agent still listed after the server's restart", problems,
                      f"at least the {before} agents listed before the restart",
                      f"{len(now)} agents listed", "read the server log; agents reconnect on their own",
                      agents_before=before, agents_now=len(now))


@guarded
def agent_conf_backed_up(run: AgentPart) -> CheckResult:
    """agent.conf is in the node's journal with its sha256, 0600."""
    problems = []
    try:
        path = run.journal.verify_backup("agent.conf")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path} is mode {mode:o}")
    except Exception as exc:  # noqa: BLE001 - the proof names any failure
        path, mode = None, None
        problems.append(redact(str(exc)))
    return step_proof("agent.conf backed up, hashed, private", problems,
                      "agent.conf in the journal with its sha256, mode 0600",
                      f"{path} (sha256 {run.journal.data['backups'].get('agent.conf', {}).get('sha256', '')[:12]})",
                      "run agent-prepare again", backup=str(path))


@guarded
def handoff_written(run: AgentPart) -> CheckResult:
    """The handoff names this node, its redacted old agent and its new agent; no secret in it."""
    path = handoff_path(run.t)
    text = path.read_text()
    h = Handoff.parse(text, run.t.trust_domain, run.t.attestor.profile)
    old = run.old_agent_id() or ""
    problems = []
    if h.node != run.t.node or h.old_agent != redact(old) or h.new_agent != run.new_agent_id():
        problems.append(f"names {h.node}, {h.old_agent}, {h.new_agent}")
    if old and old.rsplit("/", 1)[-1] in text or redact(text) != text:
        problems.append("it holds a secret")
    return step_proof("the handoff for the server host", problems,
                      f"{run.t.node}, {redact(old)}, {run.new_agent_id()}, no secret",
                      f"{path}: {h.node}, {h.old_agent}, {h.new_agent}", "run agent-prepare again",
                      handoff=str(path), old_agent=h.old_agent, new_agent=h.new_agent)


@guarded
def made_for_new_agent(run: Registration, outcome: StepResult) -> CheckResult:
    """Nothing of the old agent is left to copy for the new agent ID (the old entries stay)."""
    old = run.old_agent()
    h = run.handoff
    plan = reparent_plan(services.server_cli(run.t), old, h.new_agent, run.t.server_id) if old else None
    problems = [f"{len(plan.create)} entries still to make"] if plan and plan.create else []
    return step_proof("the node's entries made for its new agent", problems,
                      f"every entry of {h.old_agent} copied for {h.new_agent}, the old ones kept",
                      f"{len(plan.delete) if plan else 0} entries of the old agent, all copied",
                      "run the make part again", node=h.node, made_this_run=this_run(outcome, "created"),
                      old_entries=len(plan.delete) if plan else 0)


@guarded
def old_agent_retired(run: Registration, outcome: StepResult) -> CheckResult:
    """No join_token agent with the node's redacted ID is listed, and no entry is left to delete."""
    old = run.old_agent()
    problems = [f"{h} still listed" for h in [run.handoff.old_agent] if old]
    return step_proof("the node's old agent retired", problems,
                      f"{run.handoff.old_agent} evicted, its entries deleted",
                      f"{run.handoff.old_agent} not listed", "run the break part again",
                      node=run.handoff.node, done_this_run=list(outcome.changes))


@guarded
def node_tpm_agent_id(run: AgentPart) -> CheckResult:
    """The node's agent SVID is the TPM attestor's ID, proven by its own bundle and key."""
    ident = services.node_agent_identity(run.t)
    want = attestor.expected_agent_id(run.t) or run.new_agent_id()
    return step_proof("the node's agent ID is the TPM attestor's ID", [] if ident == want else [f"agent ID {ident}"],
                      f"agent ID {want}", f"agent ID {ident}", "`spire-migration diagnose` names the cause",
                      agent_before=run.journal.fact("old_agent_id"), agent_id=ident)
