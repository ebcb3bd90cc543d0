"""The proofs of the guide's rollback steps: what each step's Then asserts, with evidence.

Evidence: the processes stopped (step 1), the sha256 of each restored config
and its backup (2), the new join_token agent, the old one and the TPM agent,
the entries re-parented under the new agent (3), the journal reset (4). Agent
IDs of join_token agents hold the token; the reports redact them.
"""

from __future__ import annotations

from spire_migration.verdict import CheckResult, guarded
from spire_migration.records.journal import sha256_file
from spire_migration.checks.migration_proofs import proc_text, step_proof, this_run
from spire_migration.node.facade import Node
from spire_migration.redact import redact
from spire_migration.procedures.rollback import MIGRATION_STEPS, Rollback, backup_path
from spire_migration.node.spiffe_ids import is_join_token_agent
from spire_migration.node.spire import id_str
from spire_migration.procedures.steprun import StepResult


@guarded
def phase4_agent_stopped(rb: Rollback, node: Node, outcome: StepResult) -> CheckResult:
    """No Phase 4 SPIRE agent is running (a join_token agent of a resumed rollback may)."""
    agent, server = node.agent_proc(), node.server_proc()
    ident = node.agent_id() or ""
    jt = is_join_token_agent(ident)
    stopped = this_run(outcome, "stop ")
    kept = rb.journal.fact("rollback_keeps_server_conf") or []
    return step_proof("no Phase 4 SPIRE agent running",
                      [] if agent is None or jt else [f"spire-agent pid {agent.pid} runs as {ident}"],
                      "no spire-agent, or one attested by join_token (a resumed rollback)",
                      f"stopped in this run: {stopped or 'none (already stopped)'}; agent now {proc_text(agent) or 'none'}",
                      "stop the listed pid (kill <pid>), then re-run `pytest -m rollback`",
                      stopped_this_run=stopped, agent_now=proc_text(agent), server_now=proc_text(server),
                      agent_id=ident or None, server_conf_kept_for=kept)


@guarded
def configs_restored(rb: Rollback, node: Node, outcome: StepResult) -> CheckResult:
    """server.conf and agent.conf are byte-for-byte the Phase 3 backups."""
    pairs = [("agent.conf", node.target.agent.config)]
    if not rb.journal.fact("rollback_keeps_server_conf"):
        pairs.append(("server.conf", node.target.server.config))
    problems, hashes = [], {}
    for name, path in pairs:
        backup = backup_path(rb.journal, name)
        hashes[name] = {"file": str(path), "sha256": sha256_file(path),
                        "backup": str(backup), "backup_sha256": sha256_file(backup)}
        if path.read_bytes() != backup.read_bytes():
            problems.append(f"{path} differs from {backup}")
    return step_proof("configs restored byte for byte", problems,
                      f"{', '.join(n for n, _ in pairs)} identical to the journal's hash-checked backups",
                      "identical (sha256 equal)", "re-run `pytest -m rollback`: step 2 restores from the backups",
                      restored=hashes,
                      server_conf_kept=bool(rb.journal.fact("rollback_keeps_server_conf")),
                      restored_this_run=this_run(outcome, "restored"))


def _leaks(rb: Rollback, token: str) -> tuple[list[str], int]:
    """Journal files (backups aside) that hold the token, and how many files were read."""
    files = [p for p in rb.journal.root.rglob("*")
             if p.is_file() and p.parent.name != "backups" and "cycle-" not in str(p)]
    return [str(p) for p in files if token in p.read_text(errors="replace")], len(files)


@guarded
def new_join_token_agent(rb: Rollback, node: Node, outcome: StepResult) -> CheckResult:
    """The agent runs attested by a new join token that appears nowhere in the journal."""
    ident = node.agent_id() or ""
    record = node.agent_record(ident) if ident else None
    old = rb.old_join_token_id()
    problems = []
    if not is_join_token_agent(ident) or (record or {}).get("attestation_type") != "join_token":
        problems.append(f"agent ID {ident or 'none'}, listed as {(record or {}).get('attestation_type')}")
    if ident and ident == old:
        problems.append("it is the old (spent) join_token agent")
    leaks, read = _leaks(rb, ident.rsplit("/", 1)[-1]) if ident else ([], 0)
    if leaks:
        problems.append(f"the new join token is written in {leaks}")
    return step_proof("agent attested by a new join token, kept secret", problems,
                      "a join_token agent other than the pre-migration one, its token in no journal file",
                      f"new join_token agent {ident}; token in none of {read} journal files",
                      "re-run `pytest -m rollback`: step 3 resumes",
                      agent_after=ident, agent_before_migration=old, tpm_agent=rb.tpm_agent_id(),
                      journal_files_read=read, token_found_in=leaks,
                      started_this_run=this_run(outcome, "spire-agent", "join token"))


@guarded
def entries_back(rb: Rollback, node: Node, outcome: StepResult) -> CheckResult:
    """Every original entry is under the new join_token agent with its original content."""
    new = node.agent_id() or ""
    missing = rb.missing_entries(node)
    wanted = [e for e in rb.exported_entries() if id_str(e["parent_id"]) == rb.old_join_token_id()]
    return step_proof("every original entry back under the join_token agent",
                      [f"missing {missing[:5]}"] if missing else [],
                      f"the {len(wanted)} entries exported in migration step 3 under {new}, original content",
                      f"{len(wanted)} of {len(wanted)} under {new}",
                      "re-run `pytest -m rollback`: re-parenting never creates twice",
                      new_parent=new, entries_exported_under_old_agent=len(wanted),
                      entries_under_new_agent=len(node.entries_under(new)) if new else 0, missing=missing,
                      reparented_this_run=this_run(outcome, "created", "deleted", "pointed"))


@guarded
def tpm_agent_evicted(rb: Rollback, node: Node, outcome: StepResult) -> CheckResult:
    """The TPM agent is evicted (no longer in the server's agent list)."""
    tpm_id = rb.tpm_agent_id()
    listed = tpm_id is not None and node.agent_record(tpm_id) is not None
    return step_proof("the TPM agent evicted", [f"{tpm_id} is still listed"] if listed else [],
                      f"{tpm_id or 'the TPM agent'} not in `agent list -output json`",
                      f"{tpm_id} not listed; {len(node.agents)} agent(s) listed",
                      f"spire-server agent evict -spiffeID {tpm_id}",
                      tpm_agent=tpm_id, agents_listed=[redact(id_str(a["id"])) for a in node.agents],
                      evicted_this_run=this_run(outcome, "evicted"))


@guarded
def migration_journal_reset(rb: Rollback, outcome: StepResult) -> CheckResult:
    """The migration journal is reset (its backups kept under backups/cycle-N/) for a new migration."""
    left = [s for s in MIGRATION_STEPS if s in rb.journal.data["steps"]]
    cycles = rb.journal.fact("cycles", [])
    return step_proof("migration journal reset for a new migration",
                      [f"migration steps still recorded: {left}"] if left else [],
                      "no guide_step_N in the journal; the cycle's backups under backups/cycle-N/",
                      f"no migration step recorded; {len(cycles)} cycle(s) kept",
                      "re-run `pytest -m rollback`: step 4 resets the journal",
                      migration_steps_left=left, cycles=[c.get("cycle") for c in cycles],
                      rolled_back_at=rb.journal.fact("rolled_back_at"),
                      reset_this_run=this_run(outcome, "reset"))
