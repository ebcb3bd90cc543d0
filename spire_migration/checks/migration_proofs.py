"""The proofs of the guide's ten migration steps: what each step's Then asserts, with evidence.

Each proof reads the node after its step ran (never the step's own word for
it) and returns a :class:`CheckResult` whose evidence is what an auditor needs:
config diffs (step 4), agent IDs before and after (1, 6, 7, 8), entry counts
(3, 8), the TPM's EK and DevID fingerprints (2, 7), the processes stopped and
started with their pids (5, 6), the workload's log lines (10). ``*_this_run``
keys are what the step reported doing in this run (empty on a re-run with nothing left).
Where a step proves what a post-migration checklist item proves (step 6: post_check_1,
step 10: post_check_9; step 7 also runs post_check_7) it calls that item and adds its own evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from spire_migration.config import attestor
from spire_migration.checks import postmigration
from spire_migration.node import services
from spire_migration.node import tpm
from spire_migration.verdict import CheckResult, StepResult, check, guarded
from spire_migration.config.hclconfig import SpireConfig, load_config
from spire_migration.procedures.migration import IDENTITY, Migration
from spire_migration.node.facade import Node, Phase
from spire_migration.node.spiffe_ids import is_tpm_agent
from spire_migration.redact import redact
from spire_migration.procedures.reregister import moved_content
from spire_migration.node.spire import entry_content, id_str


def step_proof(title: str, problems: list[str], expected: str, found_ok: str, remedy: str,
               **evidence: Any) -> CheckResult:
    """A result that fails naming every problem found (``found_ok`` when none), with its evidence."""
    return check(title, not problems, expected, "; ".join(problems) if problems else found_ok, remedy, **evidence)


def this_run(outcome: StepResult, *words: str) -> list[str]:
    """The changes the step reported in this run that mention any of ``words``."""
    return [c for c in outcome.changes if any(w in c for w in words)]


def noting(result: CheckResult, **evidence: Any) -> CheckResult:
    """A shared checklist item's result with this step's own evidence added."""
    result.evidence.update(evidence)
    return result


def exported_entries(run: Migration) -> list[dict[str, Any]]:
    """Every registration entry as step 3 exported it (hash-checked)."""
    return json.loads(run.journal.verify_backup("entries.json").read_text())["entries"]


# -- step 1 -----------------------------------------------------------------
@guarded
def old_agent_recorded(run: Migration) -> CheckResult:
    """The old join_token agent ID is recorded in the journal, redacted."""
    path = run.journal.backups / IDENTITY
    old = run.old_agent_id()
    fact = run.journal.fact("old_agent_id") or ""
    prefix = run.t.agent_id_prefix("join_token")
    problems = []
    if not (old or "").startswith(prefix):
        problems.append(f"old agent ID {old!r} is not a join_token agent ID ({prefix}<token>)")
    if not path.is_file():
        problems.append(f"{path} is missing")
    if "<redacted" not in fact:
        problems.append("journal.json does not hold the old agent ID redacted")
    return step_proof("old join_token agent ID recorded", problems,
                      f"the join_token agent ID ({prefix}<token>) in {path}, redacted in journal.json",
                      f"agent before the migration: {old}", "re-run the migration from step 1",
                      agent_before=old, journal_fact=fact, identity_backup=str(path),
                      phase_now=run.node.phase().value)


# -- step 2 -----------------------------------------------------------------
def _der_sha256(der: bytes | None) -> str | None:
    return hashlib.sha256(der).hexdigest() if der else None


@guarded
def tpm_ready(run: Migration) -> CheckResult:
    """The TPM is a TPM 2.0 with a sha256 bank, an EK certificate and a re-creatable EK."""
    info = tpm.probe(run.t.tpm)
    problems = info.attestation_problems()
    devid = tpm.cert_sha1(run.t.attestor.devid_cert) if run.t.attestor.profile == "tpm_devid" else None
    return step_proof("TPM usable for TPM attestation", problems,
                      f"a TPM 2.0 at {run.t.tpm.device} with a sha256 bank, an EK certificate and its EK",
                      f"TPM {info.family} {info.manufacturer} at {info.path} ({info.kind}), banks {info.pcr_banks}, "
                      "EK certificate present", "enable the TPM in BIOS/UEFI (guide Step 2), or fix tpm.device",
                      family=info.family, manufacturer=info.manufacturer, path=str(info.path),
                      kind=info.kind, banks=info.pcr_banks, ek_cert_sha256=_der_sha256(info.ek_cert_der),
                      ek_matches_cert=info.ek_matches_cert, devid_cert_sha1=devid,
                      device_owner=f"uid {info.owner_uid} gid {info.owner_gid} mode "
                                   f"{oct(info.mode) if info.mode is not None else '?'}",
                      agent_user=run.t.agent.user)


# -- step 3 -----------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@guarded
def configs_backed_up(run: Migration, outcome: StepResult) -> CheckResult:
    """server.conf and agent.conf are in the journal, hash-checked, readable by root only."""
    j = run.journal
    problems, files = [], {}
    for name in ("server.conf", "agent.conf"):
        path = j.verify_backup(name)
        files[name] = {"path": str(path), "sha256": j.data["backups"][name]["sha256"], "mode": oct(_mode(path))}
        if _mode(path) != 0o600:
            problems.append(f"{path} has mode {oct(_mode(path))}")
    if _mode(j.backups) != 0o700:
        problems.append(f"{j.backups} has mode {oct(_mode(j.backups))}")
    return step_proof("both configs backed up, root only", problems,
                      f"server.conf and agent.conf under {j.backups} (0700), each 0600 with its sha256 recorded",
                      "both backups present, hashes match, modes 0600 / 0700",
                      "re-run the migration: step 3 takes the backups it lacks",
                      backups=files, backups_dir_mode=oct(_mode(j.backups)),
                      taken_this_run=this_run(outcome, "backed up"))


@guarded
def entries_backed_up(run: Migration) -> CheckResult:
    """Every registration entry is exported to the journal as JSON."""
    entries = exported_entries(run)
    path = run.journal.backups / "entries.json"
    old = run.old_agent_id()
    under_old = [e for e in entries if id_str(e["parent_id"]) == old]
    by_parent: dict[str, int] = {}
    for e in entries:
        by_parent[redact(id_str(e["parent_id"]))] = by_parent.get(redact(id_str(e["parent_id"])), 0) + 1
    problems = [] if entries else ["the export holds no entry"]
    if _mode(path) != 0o600:
        problems.append(f"{path} has mode {oct(_mode(path))}")
    return step_proof("every registration entry exported", problems,
                      f"every entry (`entry show -output json`) in {path}, mode 0600",
                      f"{len(entries)} entries exported, {len(under_old)} of them under the old agent",
                      "re-run the migration: step 3 exports the entries when the backup is missing",
                      entries_exported=len(entries), entries_of_old_agent=len(under_old), by_parent=by_parent,
                      sha256=run.journal.data["backups"]["entries.json"]["sha256"])


# -- step 4 -----------------------------------------------------------------
def _backup_config(run: Migration, name: str) -> SpireConfig:
    return load_config(run.journal.verify_backup(name))


@guarded
def server_has_both_attestors(run: Migration, node: Node) -> CheckResult:
    """server.conf names the join_token and the TPM node attestors."""
    found = sorted(node.server_config().plugins("NodeAttestor"))
    want = {"join_token", attestor.plugin_name(run.t)}
    problems = []
    if "join_token" not in found:   # finalized: allowed only once no join_token agent remains
        left = [redact(id_str(a["id"])) for a in node.agents if a.get("attestation_type") == "join_token"]
        if left:
            problems.append(f"join_token removed while {len(left)} join_token agent(s) remain: {left}")
        want.discard("join_token")
    if not want <= set(found):
        problems.append(f"NodeAttestors {found}")
    before = _backup_config(run, "server.conf")
    return step_proof("server.conf has join_token and the TPM node attestor", problems,
                      f"NodeAttestors {sorted(want)} in {run.t.server.config} (SPIRE servers take several)",
                      f"NodeAttestors {found}", "re-run the migration: step 4 adds the TPM attestor",
                      node_attestors_before=sorted(before.plugins("NodeAttestor")), node_attestors_now=found,
                      profile=run.t.attestor.profile,
                      diff=before.diff(node.server_config(), str(run.t.server.config)) or "(no change)")


@guarded
def agent_has_only_tpm_attestor(run: Migration, node: Node) -> CheckResult:
    """agent.conf names exactly one node attestor, the TPM one, and no join_token setting."""
    cfg = node.agent_config()
    found = sorted(cfg.plugins("NodeAttestor"))
    name = attestor.plugin_name(run.t)
    problems = [] if found == [name] else [f"NodeAttestors {found}"]
    left = [k for k in ("join_token", "join_token_file") if k in cfg.section("agent")]
    if left:
        problems.append(f"agent {{}} still sets {left}")
    before = _backup_config(run, "agent.conf")
    return step_proof("agent.conf has exactly one node attestor, the TPM one", problems,
                      f"NodeAttestors [{name}] in {run.t.agent.config} (a SPIRE agent takes exactly one), "
                      "no join_token setting", f"NodeAttestors {found}, no join_token setting",
                      "re-run the migration: step 4 rewrites agent.conf from the backup's structure",
                      node_attestors_before=sorted(before.plugins("NodeAttestor")), node_attestors_now=found,
                      profile=run.t.attestor.profile,
                      diff=before.diff(cfg, str(run.t.agent.config)) or "(no change)")


@guarded
def rest_of_configs_kept(run: Migration, node: Node) -> CheckResult:
    """Everything but the node attestors is as it was in both configs, comments included."""
    problems, kept = [], {}
    for name, now in (("server.conf", node.server_config()), ("agent.conf", node.agent_config())):
        before = _backup_config(run, name)
        for kind in ("DataStore", "KeyManager", "WorkloadAttestor"):
            if now.plugins(kind) != before.plugins(kind):
                problems.append(f"{name}: {kind} changed")
        comments = [line for line in before.text.splitlines() if line.strip().startswith("#")]
        lost = [c for c in comments if c not in now.text]
        if lost:
            problems.append(f"{name}: comments lost: {lost}")
        kept[name] = {"plugins_compared": ["DataStore", "KeyManager", "WorkloadAttestor"],
                      "comments_kept": len(comments) - len(lost), "comments": len(comments)}
    return step_proof("the rest of both configs unchanged", problems,
                      "DataStore, KeyManager, WorkloadAttestor and every comment as in the Phase 3 backups",
                      "all plugins but the node attestors and every comment as before",
                      "restore the backups (pytest -m rollback) and re-run", kept=kept)


# -- step 5 -----------------------------------------------------------------
def proc_text(info) -> str | None:
    """``pid N: argv`` (redacted) of a process, or None."""
    return f"pid {info.pid}: {info.command}" if info is not None else None


@guarded
def phase3_stopped(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """No Phase 3 SPIRE process is running: no join_token agent, no server on the old config."""
    agent, server = node.agent_proc(), node.server_proc()
    problems = []
    if agent is not None and (services.join_token_flag(agent.argv)
                              or services.started_before(agent, run.t.agent.config)):
        problems.append(f"the Phase 3 agent still runs (pid {agent.pid})")
    if server is not None and services.started_before(server, run.t.server.config):
        problems.append(f"spire-server pid {server.pid} still runs the config from before step 4")
    stopped = this_run(outcome, "stop ")
    return step_proof("no Phase 3 SPIRE process running", problems,
                      "no spire-agent started with a join token or before step 4, no spire-server on the old config",
                      f"stopped in this run: {stopped or 'none (already stopped)'}; running now: "
                      f"agent {proc_text(agent) or 'none'}, server {proc_text(server) or 'none'}",
                      "stop the listed pid (kill <pid>), then re-run",
                      stopped_this_run=stopped, agent_now=proc_text(agent), server_now=proc_text(server))


@guarded
def phase3_server_stopped(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """No spire-server runs the config from before step 4; the agent, if it ran, still runs."""
    agent, server = node.agent_proc(), node.server_proc()
    problems = []
    if server is not None and services.started_before(server, run.t.server.config):
        problems.append(f"spire-server pid {server.pid} still runs the config from before step 4")
    kept = [n for n in outcome.notes if "keeps running" in n]
    if kept and agent is None:
        problems.append("the agent was running before the step and is gone: it stopped serving")
    served = [n for n in outcome.notes if n.startswith("with the server stopped")]
    stopped = this_run(outcome, "stop ")
    return step_proof("the Phase 3 server stopped, the agent still serving", problems,
                      "no spire-server on the old config; the agent left running on its cached SVID",
                      f"stopped in this run: {stopped or 'none (already stopped)'}; running now: "
                      f"agent {proc_text(agent) or 'none'}, server {proc_text(server) or 'none'}",
                      "stop the listed pid (kill <pid>), then re-run",
                      stopped_this_run=stopped, agent_now=proc_text(agent), server_now=proc_text(server),
                      served_while_server_stopped=served)


@guarded
def made_before_break(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """The old agent's entries existed under the new agent ID before the agent restarted."""
    made = next((i for i, c in enumerate(outcome.changes) if c.startswith("created ")), None)
    started = next((i for i, c in enumerate(outcome.changes) if c.startswith("started spire-agent")), None)
    problems = []
    if made is not None and started is not None and made > started:
        problems.append("the agent restarted before its entries were created")
    if started is not None and made is None and not run.t.attestor.node_alias:
        moved = entries_moved(run, node, outcome)
        if not moved.ok:
            problems.append(moved.found)
    return step_proof("make before break: entries before the switch", problems,
                      "the old agent's entries created for the new agent ID, then the agent restarted",
                      f"order this run: {[c.split(';')[0][:60] for c in outcome.changes]}",
                      "re-run: step 6 creates what is missing before it restarts the agent",
                      changes_in_order=outcome.changes)


# -- step 6 -----------------------------------------------------------------
@guarded
def phase4_server_started(node: Node, outcome: StepResult) -> CheckResult:
    """spire-server runs the Phase 4 config with the TPM attestor and answers healthcheck (post_check_1)."""
    return noting(postmigration.server_with_tpm_attestor(node), started_this_run=this_run(outcome, "spire-server"))


@guarded
def phase4_agent_started(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """spire-agent runs without any join token and holds a new agent SVID."""
    agent = node.agent_proc()
    ident, old = node.agent_id(), run.old_agent_id()
    problems = []
    if agent is None or not node.agent.healthy():
        problems.append(f"agent {proc_text(agent) or 'not running'}, healthcheck failed")
    elif flag := services.join_token_flag(agent.argv):
        problems.append(f"pid {agent.pid} was started with {flag}: it attests by join_token")
    if not ident or ident == old:
        problems.append(f"the agent's SVID is {'missing' if not ident else 'still the join_token one'}")
    return step_proof("spire-agent running without a join token, newly attested", problems,
                      "a healthy spire-agent with no -joinToken, holding an agent SVID other than the old one",
                      f"{proc_text(agent)}; agent ID {ident}", f"read {run.t.agent.log}; see the guide's Issue 1",
                      agent=proc_text(agent), agent_before=old, agent_after=ident,
                      started_this_run=this_run(outcome, "spire-agent", "SVID"))


# -- step 7 -----------------------------------------------------------------
@guarded
def tpm_agent_id(run: Migration, node: Node) -> CheckResult:
    """The agent ID is the one the TPM attestor gives this node (tpm_devid: from the DevID certificate)."""
    ident = node.agent_id() or ""
    want = attestor.expected_agent_id(run.t)
    prefix = run.t.agent_id_prefix(run.t.attestor.profile)
    ok = ident == want if want else ident.startswith(prefix)
    devid = tpm.cert_sha1(run.t.attestor.devid_cert) if run.t.attestor.profile == "tpm_devid" else None
    info = tpm.probe(run.t.tpm)
    return step_proof("agent ID is the TPM attestor's ID for this node",
                      [] if ok else [f"agent ID {ident or 'none'}"],
                      f"agent ID {want or prefix + '<sha256 of the EK public key>'}",
                      f"agent ID {ident}", "see the guide's Issue 1; `pytest -m diagnose` names the cause",
                      agent_before=run.old_agent_id(), agent_id=ident, expected_agent_id=want,
                      devid_cert_sha1=devid, ek_cert_sha256=_der_sha256(info.ek_cert_der),
                      attestation_type=(node.agent_record(ident) or {}).get("attestation_type"))


# -- step 8 -----------------------------------------------------------------
@guarded
def entries_moved(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """Every entry of the old agent is under the new agent with identical content."""
    old = run.old_agent_id()
    parent = run.t.attestor.node_alias or run.new_agent_id() or ""
    wanted = [json.dumps(moved_content(e, old, parent), sort_keys=True)
              for e in exported_entries(run) if id_str(e["parent_id"]) == old]
    have = [json.dumps(entry_content(e), sort_keys=True) for e in node.entries_under(parent)]
    missing = [json.loads(w)["spiffe_id"] for w in wanted if w not in have]
    problems = [] if wanted else [f"the export has no entry under the old agent {old}"]
    if missing:
        problems.append(f"{len(missing)} missing under {parent}: {missing[:5]}")
    return step_proof("every entry of the old agent under the new one, identical", problems,
                      f"the {len(wanted)} entries step 3 exported under the old agent, under {parent}, same content",
                      f"{len(wanted) - len(missing)} of {len(wanted)} under {parent}",
                      "re-run the migration: step 8 re-creates what is missing, never twice",
                      agent_before=old, agent_after=run.new_agent_id(), new_parent=parent,
                      entries_of_old_agent=len(wanted), moved=len(wanted) - len(missing),
                      entries_under_new_parent=len(have), missing=missing,
                      done_this_run=this_run(outcome, "create", "pointed", "deleted"))


@guarded
def old_agent_gone(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """No entry or node alias refers to the old agent, and the old agent is evicted."""
    old = run.old_agent_id()
    left = [id_str(e["spiffe_id"]) for e in node.entries
            if id_str(e["parent_id"]) == old or any(s["value"] == old for s in e.get("selectors") or [])]
    listed = node.agent_record(old) is not None if old else False
    problems = [f"{len(left)} entries refer to it: {left[:5]}"] if left else []
    if listed:
        problems.append("the server still lists it")
    return step_proof("the old join_token agent retired", problems,
                      f"no entry parented to or selecting {old}; not in the server's agent list",
                      "no entry refers to it; evicted", "re-run the migration: step 8 finishes the move",
                      agent_before=old, entries_referring=left, still_listed=listed,
                      entries_total=len(node.entries),
                      evicted_this_run=this_run(outcome, "evicted"))


# -- step 9 -----------------------------------------------------------------
@guarded
def phase4_workload_running(node: Node, outcome: StepResult) -> CheckResult:
    """The Phase 4 workload runs through the target's runtime."""
    instances = node.runtime.instances()
    seen = [{"name": i.name, "phase": i.phase, "state": i.state} for i in instances]
    running = [i.name for i in instances if i.phase == 4 and i.state.lower() == "running"]
    return step_proof("the Phase 4 workload is running", [] if running else [f"instances {seen}"],
                      f"Phase 4 workload instances running ({node.target.workload.runtime})",
                      f"running: {running}", "re-run the migration: step 9 redeploys",
                      runtime=node.target.workload.runtime, instances=seen, deployed_this_run=list(outcome.changes))


# -- step 10 ----------------------------------------------------------------
@guarded
def workload_verified_since_deploy(run: Migration, node: Node, outcome: StepResult) -> CheckResult:
    """The workload logged "Successfully fetched SVIDs" and "VERIFIED" since the deploy (post_check_9)."""
    return noting(postmigration.workload_logs_success(node, run.journal.data.get("facts", {})),
                  mtls_check_this_run=[n for n in outcome.notes if n.startswith("check:")])


@guarded
def served_by_tpm_agent(run: Migration, node: Node) -> CheckResult:
    """The agent serving the workload is TPM-attested and the workload's entry is under it."""
    ident = node.agent_id() or ""
    parent = run.t.attestor.node_alias or ident
    tpm_id = is_tpm_agent(ident)
    entries = [id_str(e["spiffe_id"]) for e in node.entries_under(parent)]
    problems = [] if tpm_id else [f"agent ID {ident or 'none'}"]
    if run.t.workload.spiffe_id not in entries:
        problems.append(f"{run.t.workload.spiffe_id} is not under {parent}")
    if node.phase() is not Phase.PHASE4:
        problems.append(f"node phase {node.phase().value}")
    return step_proof("the workload is served by the TPM-attested agent", problems,
                      f"a TPM agent ID, {run.t.workload.spiffe_id} under {parent}, the node in Phase 4",
                      f"agent {ident}; {run.t.workload.spiffe_id} under it; {Phase.PHASE4.value}",
                      "see post_check_4 (`pytest -m validate`)",
                      agent_after=ident, workload_entries=entries, phase=node.phase().value)
