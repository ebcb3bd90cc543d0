"""The guide's Rollback Procedure, on real SPIRE, from what ``migrate`` recorded.

Four steps, each idempotent and resumable like the migration's (journal steps
``rollback_step_N``):

1. stop the Phase 4 components: the exact processes, by pid (after checking
   that both config backups exist and are unaltered: nothing is stopped when
   the way back is not there);
2. restore server.conf and agent.conf byte for byte from the journal's
   backups, hash checked (:meth:`Journal.verify_backup` refuses a missing or
   altered backup);
3. restart Phase 3. The guide's "run the Phase 3 demo again" cannot work on
   real SPIRE: the old join token is spent and the old join_token agent was
   evicted by migration step 8 (an evicted join_token agent can never attest
   again). So: a *new* join token (``token generate -spiffeID`` with the node
   alias the first token had), the agent started with it after forgetting the
   TPM agent's cached SVID, every entry re-parented under the new join_token
   agent ID with its original content, the TPM agent evicted, the Phase 3
   workload redeployed;
4. verify Phase 3: the pre-migration checks pass and the workload logs
   VERIFIED; then the migration's journal is reset (its backups are kept under
   ``backups/cycle-N/``) so a new ``pytest -m migrate`` migrates again.

The new join token is a secret (:class:`~spire_migration.secret.Secret`, short
TTL): it reaches the agent in a 0600 file (``-joinTokenFile``) removed once
the agent attested, never on a command line (the guide's ``-joinToken`` would
show it in ``ps`` to every local user), and never in the journal, a log or a
report.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spire_migration.config import attestor
from spire_migration.checks import premigration
from spire_migration.node import services
from spire_migration.errors import JournalError, MigrationError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.records.journal import Journal, sha256_file
from spire_migration.records.locks import holds_server_lock
from spire_migration.procedures.migration import IDENTITY
from spire_migration.node.facade import Node, Phase
from spire_migration.redact import redact
from spire_migration.procedures.reregister import apply_reparent, moved_content, reparent_plan
from spire_migration.node.spiffe_ids import TPM_ATTESTORS, is_join_token_agent, is_tpm_agent
from spire_migration.node.spire import entry_content, id_str
from spire_migration.procedures.steprun import JournaledRun, StepResult

CONFIGS = ("server.conf", "agent.conf")
#: Backups that belong to one migration cycle; retired after a completed rollback.
CYCLE_BACKUPS = ("server.conf", "agent.conf", "entries.json", IDENTITY, "agent-data.json")
MIGRATION_STEPS = tuple(f"guide_step_{n}" for n in range(1, 11))


class Rollback(JournaledRun):
    """Return one node to Phase 3 from its migration journal.

    >>> import tempfile, pathlib
    >>> from spire_migration.config.target import Target
    >>> rb = Rollback(Target(), Journal(pathlib.Path(tempfile.mkdtemp())), plan=True)
    >>> rb.step_done(1)
    False
    """

    #: the backups of one migration cycle (moved under backups/cycle-N/ by :meth:`retire_cycle`)
    cycle_backups: tuple[str, ...] = CYCLE_BACKUPS

    # -- journal ----------------------------------------------------------------
    def step_done(self, n: int) -> bool:
        """Rollback step *n* is done for the current migration cycle.

        A rollback step recorded before the migration's step 1 belongs to an
        earlier cycle (migrate, rollback, migrate again) and does not count.
        """
        rec = self.journal.data["steps"].get(f"rollback_step_{n}", {})
        if rec.get("status") != "done":
            return False
        began = self.journal.data["steps"].get("guide_step_1", {}).get("at")
        return began is None or rec.get("at", 0) >= began

    def _result(self, n: int, changes: list[str], notes: list[str] | None = None, **evidence) -> StepResult:
        return self.finish(f"rollback_step_{n}", changes, notes, **evidence)

    def _require_migration(self) -> None:
        j = self.journal
        if not (j.done("guide_step_1") or any(n in j.data["backups"] for n in CYCLE_BACKUPS)):
            raise JournalError("there is no migration to roll back on this node",
                               expected=f"a migration journal under {j.root} (written by `pytest -m migrate`)",
                               found="no migration step and no backup recorded",
                               remedy="nothing to do; `pytest -m validate` shows the node's phase")

    # -- identities -------------------------------------------------------------
    def old_join_token_id(self) -> str | None:
        """The join_token agent ID the node had before the migration (holds a spent token)."""
        try:
            return json.loads(backup_path(self.journal, IDENTITY).read_text())["old_agent_id"]
        except JournalError:
            return None

    def tpm_agent_id(self) -> str | None:
        """This node's TPM agent ID (recorded by migration step 7, else derived from the DevID)."""
        recorded = self.journal.fact("new_agent_id")
        if is_tpm_agent(recorded):
            return recorded
        try:
            return attestor.expected_agent_id(self.t)
        except MigrationError:
            return None

    def exported_entries(self) -> list[dict[str, Any]]:
        try:
            return json.loads(backup_path(self.journal, "entries.json").read_text())["entries"]
        except JournalError:
            return []

    def token_alias(self) -> str | None:
        """The SPIFFE ID the first join token was generated with (``token generate -spiffeID``).

        SPIRE records it as an entry under the join_token agent that selects
        ``spiffe_id:<that agent>``; the export of step 3 still has it.
        """
        old = self.old_join_token_id()
        for e in self.exported_entries():
            if id_str(e["parent_id"]) == old and any(
                    s["type"] == "spiffe_id" and s["value"] == old for s in e.get("selectors") or []):
                return id_str(e["spiffe_id"])
        return None

    def _other_tpm_agents(self) -> list[str]:
        """TPM-attested agents of the server that are not this node's (a gradual migration)."""
        mine = self.tpm_agent_id()
        try:
            agents = services.server_cli(self.t).agents()
        except MigrationError:
            return []
        return sorted(id_str(a["id"]) for a in agents
                      if a.get("attestation_type") in TPM_ATTESTORS and id_str(a["id"]) != mine)

    def _restores_server_conf(self) -> bool:
        keep = self.journal.fact("rollback_keeps_server_conf")
        return not keep

    # -- step 1 -----------------------------------------------------------------
    @holds_server_lock
    def step1_stop_phase4(self) -> StepResult:
        """Stop the Phase 4 agent (and the server when its config is to be restored), by pid."""
        if self.step_done(1):
            return self._result(1, [], ["already done in this rollback"])
        self._require_migration()
        for name in CONFIGS:
            self.journal.verify_backup(name)   # refuse before anything is stopped
        services.check_service_mode(self.t)    # systemd: never beside a unit, no token in ExecStart
        for path in (self.t.server.config, self.t.agent.config):
            refuse_link(path)                  # step 2 would refuse it: stop nothing
        notes: list[str] = []
        changes: list[str] = []
        others = self._other_tpm_agents()
        if others:
            notes.append(f"server.conf is kept (dual mode): other nodes' agents are TPM-attested: {others}")
        if not self.plan:
            self.journal.set_fact("rollback_keeps_server_conf", others)
        agent = services.agent_proc(self.t)
        if agent is not None:
            if not self.plan:
                services.stop_agent(self.t)
            changes.append(f"stop spire-agent pid {agent.pid} ({agent.command})")
        server = services.server_proc(self.t)
        backup_sha = self.journal.data["backups"]["server.conf"]["sha256"]
        if server is not None and not others and sha256_file(self.t.server.config) != backup_sha:
            if not self.plan:
                services.stop_server(self.t)
            changes.append(f"stop spire-server pid {server.pid} (it runs the Phase 4 config)")
        notes.append("the Phase 4 workload is replaced by the Phase 3 one in rollback step 3")
        return self._result(1, changes, notes)

    # -- step 2 -----------------------------------------------------------------
    @holds_server_lock
    def step2_restore_configs(self) -> StepResult:
        """Restore both configs byte for byte from the hash-checked backups."""
        if self.step_done(2):
            return self._result(2, [], ["already done in this rollback"])
        self._require_migration()
        wanted = [("server.conf", self.t.server.config), ("agent.conf", self.t.agent.config)]
        if self.journal.fact("rollback_keeps_server_conf"):
            wanted = wanted[1:]
        backups = {name: self.journal.verify_backup(name) for name, _ in wanted}  # all, before any write
        for _, dest in wanted:
            refuse_link(dest)  # all, before any write: never through a link, never leave one
        changes = []
        for name, dest in wanted:
            want = self.journal.data["backups"][name]["sha256"]
            if dest.exists() and sha256_file(dest) == want:
                continue
            if not self.plan:
                write_file(dest, backups[name].read_bytes(), mode=None if dest.exists() else 0o644)
                if sha256_file(dest) != want:
                    raise JournalError(f"{dest} does not match its backup after the restore",
                                       expected=f"sha256 {want}", found=f"sha256 {sha256_file(dest)}",
                                       remedy=f"copy {backups[name]} to {dest} by hand")
            changes.append(f"{'restored' if not self.plan else 'restore'} {dest} from {backups[name]} "
                           f"(sha256 {want[:12]})")
        return self._result(2, changes)

    # -- step 3 -----------------------------------------------------------------
    @holds_server_lock
    def step3_restart_phase3(self) -> StepResult:
        """Server, a new join token, the agent with it, entries re-parented, Phase 3 workload."""
        if self.step_done(3):
            return self._result(3, [], ["already done in this rollback"])
        self._require_migration()
        changes: list[str] = []
        notes: list[str] = []
        old_jt, tpm_id = self.old_join_token_id(), self.tpm_agent_id()
        if self.plan:
            return self._result(3, [
                "start spire-server (Phase 3 config) and wait until healthy",
                f"generate a new join token (-spiffeID {self.token_alias() or 'none'}); the old one is spent",
                "forget the TPM agent's cached SVID; start spire-agent with the token in a 0600 file",
                f"re-parent every entry of {tpm_id} (and of {redact(str(old_jt))}) under the new join_token agent",
                f"evict the TPM agent {tpm_id}", "deploy the Phase 3 workload"])
        if services.server_proc(self.t) is None:
            services.start_server(self.t)
            changes.append("started spire-server with the restored config; it is healthy")
        server = services.server_cli(self.t)
        new = self._current_new_join_token_agent(old_jt)
        if new is None:
            if services.agent_proc(self.t) is not None:
                info = services.stop_agent(self.t)
                changes.append(f"stopped spire-agent pid {info.pid if info else '?'}")
            if services.forget_agent_svid(self.t):
                changes.append("dropped the agent's cached TPM SVID so it attests with the new join token")
            alias = self.token_alias()
            token = server.token_generate(spiffe_id=alias, ttl=services.token_ttl(self.t))
            info = services.start_agent(self.t, join_token=token)   # returns once attested
            new = services.wait_agent_ready(self.t, info)
            changes.append(f"generated a new join token{f' for {alias}' if alias else ''} and started "
                           f"spire-agent pid {info.pid} with it; it attested as {redact(new)}")
        notes.append(f"new join_token agent {redact(new)}")
        for old_parent in [p for p in (self.t.attestor.node_alias, tpm_id, old_jt) if p]:
            plan = reparent_plan(server, old_parent, new, self.t.server_id)
            if not plan.empty:
                changes += apply_reparent(server, plan)
        for gone in [p for p in (tpm_id, old_jt) if p]:
            if server.agent(gone) is not None:
                server.evict(gone)
                changes.append(f"evicted {redact(gone)}")
        rt = self.node.runtime
        rt.check_reachable()
        lines = rt.plan_deploy(3, None)
        if lines:
            self.journal.set_fact("rollback_deployed_at", datetime.now(timezone.utc).isoformat())
            rt.deploy(3, None, timeout=self.t.thresholds.start_timeout_s)
            changes += lines
        return self._result(3, changes, notes)

    def _current_new_join_token_agent(self, old_jt: str | None) -> str | None:
        """The agent's ID when it already runs attested by a *new* join token (a resumed step 3)."""
        ident = services.agent_identity(self.t)
        if not is_join_token_agent(ident) or ident == old_jt:
            return None
        if services.agent_proc(self.t) is None or not services.agent_cli(self.t).healthy():
            return None
        return ident if services.server_cli(self.t).agent(ident) is not None else None

    # -- step 4 -----------------------------------------------------------------
    def step4_verify_phase3(self) -> StepResult:
        """The pre-migration checks pass, the workload logs VERIFIED, every entry is back."""
        if self.step_done(4):
            retired = self.retire_cycle()
            return self._result(4, retired, ["already done in this rollback"])
        self._require_migration()
        if self.plan:
            return self._result(4, [], ["expect Phase 3: pre-migration checks pass, workload VERIFIED"])
        node = self.node
        since = self.journal.fact("rollback_deployed_at")
        results = [premigration.server_running(node), premigration.agent_running(node),
                   premigration.agent_attested_by(node, "join_token"), premigration.workload_entry_under_agent(node)]
        rt = node.runtime
        problems = [r.message() for r in results if not r.ok]
        if not problems:
            for inst in [i for i in rt.instances() if "client" in i.name and i.state.lower() == "running"]:
                rt.wait_for_log(inst, "VERIFIED", self.t.thresholds.start_timeout_s,
                                datetime.fromisoformat(since) if since else None)
            verified = premigration.workload_verified(node, datetime.fromisoformat(since) if since else None)
            results.append(verified)
            if not verified.ok:
                problems.append(verified.message())
        if node.phase() is not Phase.PHASE3:
            problems.append(f"node phase: expected {Phase.PHASE3.value}, found {node.phase().value}")
        missing = self.missing_entries(node)
        if missing:
            problems.append(f"{len(missing)} original entries are not back under the join_token agent: {missing[:3]}")
        if problems:
            raise MigrationError("Phase 3 is not working after the rollback",
                                 expected="every pre-migration check passes and every entry is back",
                                 found="\n" + "\n".join(problems),
                                 remedy="read the agent and server logs; re-run `pytest -m rollback` (it resumes)")
        check = rt.check(self.t.thresholds.start_timeout_s)
        if not check.get("verified"):
            raise MigrationError("the workload's mTLS check failed after the rollback",
                                 expected="verified", found=str(check))
        self.journal.set_fact("rolled_back_at", datetime.now(timezone.utc).isoformat())
        result = self._result(4, [], [r.title for r in results] + [f"check: {check}"])
        retired = self.retire_cycle()
        result.changes += retired
        return result

    def missing_entries(self, node: Node) -> list[str]:
        """Original entries (export of step 3) not present under the current join_token agent."""
        old, new = self.old_join_token_id(), node.agent_id()
        if not old or not new:
            return ["<cannot tell the old and new join_token agent IDs>"]
        have = [json.dumps(entry_content(e), sort_keys=True) for e in node.server.entries(parentID=new)]
        missing = []
        for e in self.exported_entries():
            if id_str(e["parent_id"]) == old:
                want = json.dumps(moved_content(e, old, new), sort_keys=True)
                if want in have:
                    have.remove(want)
                else:
                    missing.append(id_str(e["spiffe_id"]))
        return missing

    # -- after a completed rollback -----------------------------------------------
    def retire_cycle(self) -> list[str]:
        """Reset the migration's journal steps and keep its backups under ``backups/cycle-N/``.

        A later ``pytest -m migrate`` then starts from step 1 and backs up the
        Phase 3 state it finds (the new join_token agent, its entries).
        Idempotent: nothing is moved twice.
        """
        if self.plan:
            return []
        j = self.journal
        present = [n for n in self.cycle_backups if n in j.data["backups"]]
        steps = [s for s in MIGRATION_STEPS if s in j.data["steps"]]
        if not present and not steps:
            return []
        n = 1
        while (j.backups / f"cycle-{n}").exists():
            n += 1
        cycle = f"cycle-{n}"
        (j.backups / cycle).mkdir(mode=0o700)
        for name in present:
            src = j.backups / name
            if src.exists():
                os.replace(src, j.backups / cycle / name)
            j.data["backups"][f"{cycle}/{name}"] = j.data["backups"].pop(name)
        cycles = j.data["facts"].setdefault("cycles", [])
        cycles.append({"cycle": cycle, "rolled_back_at": j.fact("rolled_back_at"),
                       "old_agent_id": j.fact("old_agent_id"), "tpm_agent_id": j.fact("new_agent_id")})
        for key in ("old_agent_id", "new_agent_id", "tpm_selectors", "deployed_at", "migrated_at",
                    "entries_before", "rollback_keeps_server_conf"):
            j.data["facts"].pop(key, None)
        j.reset(*steps)   # saves
        return [f"reset the migration journal ({len(steps)} steps); its backups are kept in {j.backups / cycle}"]

    STEPS = ("step1_stop_phase4", "step2_restore_configs", "step3_restart_phase3", "step4_verify_phase3")

    def run(self) -> list[StepResult]:
        return [getattr(self, name)() for name in self.STEPS]


def backup_path(journal: Journal, name: str) -> Path:
    """The backup *name* of the current cycle, else of the last retired one (verified)."""
    if journal.has_backup(name):
        return journal.verify_backup(name)
    cycles = [c["cycle"] for c in journal.fact("cycles", []) if f"{c['cycle']}/{name}" in journal.data["backups"]]
    return journal.verify_backup(f"{cycles[-1]}/{name}" if cycles else name)
