"""The proofs of the fleet rollback parts (spire_migration/procedures/fleet_rollback.py): what
their Thens assert, read from the host after the step ran, with evidence."""

from __future__ import annotations

import stat

from spire_migration.checks import premigration
from spire_migration.checks.migration_proofs import step_proof, this_run
from spire_migration.node import services
from spire_migration.node.spiffe_ids import is_tpm_agent
from spire_migration.node.spire import id_str
from spire_migration.procedures.fleet_rollback import (ROLLBACK_HANDOFF, AgentRollback, RollbackHandoff,
                                                       RollbackReparent, RollbackToken, redacted_join_token_id,
                                                       token_path)
from spire_migration.procedures.reregister import reparent_plan
from spire_migration.procedures.rollback import backup_path
from spire_migration.records.journal import sha256_file
from spire_migration.redact import fingerprint, redact
from spire_migration.verdict import CheckResult, StepResult, guarded


def _journal_texts(root) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != token_path(root).name]


@guarded
def token_private(run: RollbackToken) -> CheckResult:
    """The token (when not yet used) is in a 0600 file, and nowhere else in the node's journal here."""
    path = token_path(run.journal.root)
    problems, mode = [], None
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        token = path.read_text().strip()
        if mode != 0o600:
            problems.append(f"{path} is mode {mode:o}")
        if fingerprint(token) != run.journal.fact("rollback_issued_fp"):
            problems.append("the journal's fingerprint is not the file's token's")
        if any(token.encode() in text for text in _journal_texts(run.journal.root)):
            problems.append("the token is in a journal file")
    elif run.token_agent() is None:
        problems.append(f"no {path} and no agent attested with the token")
    return step_proof("the node's new join token, private", problems, f"{path} mode 0600, its token nowhere else",
                      f"{path}: {'mode %o' % mode if mode is not None else 'used and removed'}",
                      "run the token part again", token_file=str(path),
                      token=redacted_join_token_id(run.t.trust_domain, str(run.journal.fact("rollback_issued_fp"))))


@guarded
def made_for_token_agent(run: RollbackToken, outcome: StepResult) -> CheckResult:
    """Nothing of the TPM agent is left to copy for the join_token agent of the new token."""
    path = token_path(run.journal.root)
    new = run.token_agent() or (f"spiffe://{run.t.trust_domain}/spire/agent/join_token/{path.read_text().strip()}"
                                if path.is_file() else None)
    plan = reparent_plan(services.server_cli(run.t), run.tpm_agent, new, run.t.server_id) if new else None
    problems = [f"{len(plan.create)} entries still to make"] if plan and plan.create else []
    if new is None and run.tpm_listed():
        problems.append("neither the token nor its agent is known")
    return step_proof("the node's entries made for its join_token agent", problems,
                      f"every entry of {run.tpm_agent} copied for {redact(str(new))}, the TPM agent's kept",
                      f"{len(plan.delete) if plan else 0} entries of the TPM agent, all copied",
                      "run the token part again", node=run.handoff.node, made_this_run=this_run(outcome, "created"))


@guarded
def no_tpm_agent(run: AgentRollback) -> CheckResult:
    """No agent runs on the node as the TPM agent (none runs, or the join_token one already)."""
    proc = services.agent_proc(run.t)
    ident = services.node_agent_identity(run.t) if proc else None
    problems = [f"spire-agent pid {proc.pid} runs as {ident}"] if proc and is_tpm_agent(ident) else []
    return step_proof("no TPM agent runs on the node", problems, "no spire-agent running as the TPM agent",
                      f"pid {proc.pid} as {redact(str(ident))}" if proc else "no spire-agent running",
                      "run the agent part again", pid=proc.pid if proc else None)


@guarded
def agent_conf_restored(run: AgentRollback) -> CheckResult:
    """agent.conf is byte for byte the Phase 3 backup (of this cycle, or the one just retired)."""
    backup = backup_path(run.journal, "agent.conf")
    ok = sha256_file(backup) == sha256_file(run.t.agent.config)
    return step_proof("agent.conf restored", [] if ok else [f"{run.t.agent.config} differs from {backup}"],
                      f"{run.t.agent.config} = {backup}", f"sha256 {sha256_file(backup)[:12]}",
                      "run the agent part again", backup=str(backup))


@guarded
def join_token_agent(run: AgentRollback) -> CheckResult:
    """The node's agent SVID is the join_token agent of the new token (own bundle and key); no token file."""
    ident = services.node_agent_identity(run.t)
    want = run.journal.fact("rollback_new_agent")
    problems = [] if want and redact(str(ident)) == want else [f"agent {redact(str(ident))}"]
    if run.token_file().exists():
        problems.append(f"{run.token_file()} is still there")
    return step_proof("the node's agent is the new join_token agent", problems, f"agent {want}, no token file",
                      f"agent {redact(str(ident))}", "run the agent part again", agent_after=redact(str(ident)))


@guarded
def rollback_handoff_written(run: AgentRollback) -> CheckResult:
    """The rollback handoff names this node, its redacted join_token agent and its TPM agent; no secret."""
    path = run.t.journal_root / ROLLBACK_HANDOFF
    text = path.read_text()
    h = RollbackHandoff.parse(text, run.t.trust_domain)
    ident = services.node_agent_identity(run.t) or ""
    problems = []
    if h.node != run.t.node or h.new_agent != redact(ident) or not is_tpm_agent(h.tpm_agent):
        problems.append(f"names {h.node}, {h.new_agent}, {h.tpm_agent}")
    if ident.rsplit("/", 1)[-1] in text or redact(text) != text:
        problems.append("it holds a secret")
    return step_proof("the rollback handoff for the server host", problems,
                      f"{run.t.node}, {redact(ident)}, the TPM agent, no secret",
                      f"{path}: {h.node}, {h.new_agent}, {h.tpm_agent}", "run the agent part again",
                      handoff=str(path))


def workload_verified(run: AgentRollback) -> CheckResult:
    return premigration.workload_verified(run.node)


@guarded
def tpm_agent_retired(run: RollbackReparent, outcome: StepResult) -> CheckResult:
    """The TPM agent is not listed and no entry is left under it."""
    server = services.server_cli(run.t)
    left = server.entries(parentID=run.tpm_agent)
    problems = ([f"{run.tpm_agent} still listed"] if server.agent(run.tpm_agent) else []) + \
        ([f"{len(left)} entries under it: {[id_str(e['spiffe_id']) for e in left[:3]]}"] if left else [])
    return step_proof("the node's TPM agent retired", problems, f"{run.tpm_agent} evicted, no entry under it",
                      f"{run.tpm_agent} not listed, no entry under it", "run the reparent part again",
                      node=run.handoff.node, done_this_run=list(outcome.changes))
