"""The guide's ten migration steps, performed on real SPIRE.

Each step is idempotent and state-based: it looks at the node, does only what
is still missing, and returns the changes it made (with ``plan=True``, the
changes it would make, and it changes nothing). The journal records each
completed step, the backups and the agent IDs, so an interrupted run resumes.

Where the guide is wrong about real SPIRE the step says so (see README,
"Where the suite departs from the guide").
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from typing import Callable

from spire_migration.config import attestor
from spire_migration.config import guide_lint
from spire_migration.checks import premigration
from spire_migration.procedures import restore
from spire_migration.node import services
from spire_migration.config import startcheck
from spire_migration.node import tpm
from spire_migration.errors import ConfigError, MigrationError, SpireError, TPMError
from spire_migration.procedures.faults import checkpoint, fail_point
from spire_migration.fileio import refuse_link, write_file
from spire_migration.config.hclconfig import SpireConfig, load_config
from spire_migration.records.locks import holds_server_lock
from spire_migration.node.facade import Phase
from spire_migration.redact import redact
from spire_migration.procedures.reregister import apply_make, apply_reparent, reparent_plan
from spire_migration.node.spiffe_ids import is_join_token_agent, is_tpm_agent
from spire_migration.procedures.steprun import JournaledRun, StepResult

IDENTITY = "identity.json"   # backups/: the full old agent ID (holds a spent join token)


class Migration(JournaledRun):
    """Perform the migration of one node.

    >>> from spire_migration.config.target import Target
    >>> from spire_migration.records.journal import Journal
    >>> import tempfile, pathlib
    >>> m = Migration(Target(), Journal(pathlib.Path(tempfile.mkdtemp())), plan=True)
    >>> m.plan
    True
    """

    # -- identities -------------------------------------------------------------
    def old_agent_id(self) -> str | None:
        path = self.journal.backups / IDENTITY
        if path.exists():
            return json.loads(path.read_text())["old_agent_id"]
        ident = services.agent_identity(self.t)
        return ident if is_join_token_agent(ident) else None

    def new_agent_id(self) -> str | None:
        ident = services.agent_identity(self.t)
        if is_tpm_agent(ident):
            return ident
        return attestor.expected_agent_id(self.t)

    def migrated(self) -> bool:
        return self.journal.done("guide_step_10") and self.node.phase() is Phase.PHASE4

    def preflight(self) -> list[str]:
        """Every input the later steps need, checked before anything changes."""
        srv = load_config(self.t.server.config)
        agt = load_config(self.t.agent.config)
        for cfg, section in ((srv, "server"), (agt, "agent")):
            cfg.section(section)
        blocking = [f for f in guide_lint.lint(srv, agt) if not f.fixed_by_step4]
        if blocking:
            raise ConfigError("the configs follow the guide where real SPIRE refuses it",
                              expected="configs SPIRE 1.15 accepts",
                              found="; ".join(f"{f.file}: {f.text}" for f in blocking),
                              remedy="; ".join(f.fix for f in blocking))
        notes = services.check_service_mode(self.t) + attestor.check_inputs(self.t)
        self.node.runtime.check_reachable()
        if not self.node.server.healthy() and services.server_proc(self.t) is None \
                and not self.journal.done("guide_step_5"):
            raise SpireError("the SPIRE server is not running", expected=f"a healthy server on {self.t.server.socket}",
                             found="no spire-server process", remedy="start Phase 3 first (guide Step 1)")
        return notes

    # -- step 1 -----------------------------------------------------------------
    def step1_verify_phase3(self) -> StepResult:
        """The pre-migration checks are the gate."""
        node = self.node
        self.preflight()
        if self.migrated():
            return self.finish("guide_step_1", [], ["already migrated: nothing to verify"])
        if self.journal.done("guide_step_1"):
            return self.finish("guide_step_1", [], [f"resuming a migration in progress ({node.phase().value})"])
        phase = node.phase()
        if phase is not Phase.PHASE3:
            raise ConfigError("the node is not in Phase 3 and no migration journal explains it",
                              expected="Phase 3 (agent.conf with join_token, agent attested by join_token)",
                              found=phase.value, remedy="run `pytest -m validate` to see where it stands")
        results = [premigration.server_running(node), premigration.agent_running(node),
                   premigration.agent_attested_by(node, "join_token"), premigration.workload_entry_under_agent(node),
                   premigration.workload_verified(node)]
        failed = [r for r in results if not r.ok]
        if failed:
            raise MigrationError("Phase 3 is not working: the migration does not start",
                                 expected="every pre-migration check passes",
                                 found="\n" + "\n".join(r.message() for r in failed),
                                 remedy="fix Phase 3 first (guide Step 1)")
        old = node.agent_id()
        if not self.plan:
            self.journal.backup_data(IDENTITY, json.dumps({"old_agent_id": old}))
            self.journal.set_fact("old_agent_id", redact(old or ""))
        return self.finish("guide_step_1", [], [f"Phase 3 verified; agent {redact(old or '')}"])

    # -- step 2 -----------------------------------------------------------------
    def step2_verify_tpm(self) -> StepResult:
        """The guide's detect_tpm.sh: present, 2.0, sha256, EK, reachable by the agent's user."""
        info = tpm.probe(self.t.tpm)
        problems = info.attestation_problems()
        user = self.t.agent.user
        if user != "root" and not _user_can_open(user, info):
            problems.append(f"the agent user {user} cannot open {info.path}")
        if problems:
            raise TPMError("the TPM is not usable for SPIRE's TPM attestation",
                           expected=f"TPM 2.0 at {self.t.tpm.device} with sha256 bank and EK certificate, "
                                    f"usable by {user}",
                           found="; ".join(problems),
                           remedy="enable the TPM in BIOS/UEFI (guide Step 2), or fix tpm.device")
        return self.finish("guide_step_2", [], [f"TPM {info.family} {info.manufacturer} at {info.path}, "
                                                   f"banks {info.pcr_banks}, EK certificate present"])

    # -- step 3 -----------------------------------------------------------------
    def step3_backup(self) -> StepResult:
        """Back up both configs (hash, 0600) and every registration entry."""
        changes = []
        if self.plan:
            for name in ("server.conf", "agent.conf", "entries.json"):
                if not self.journal.has_backup(name):
                    changes.append(f"back up {name} into {self.journal.backups}")
            return self.finish("guide_step_3", changes)
        for name, src in (("server.conf", self.t.server.config), ("agent.conf", self.t.agent.config)):
            path, created = self.journal.backup_file(name, src)
            if created:
                changes.append(f"backed up {src} to {path} (sha256 {self.journal.data['backups'][name]['sha256'][:12]})")
        if not self.journal.has_backup("entries.json"):
            entries = self.node.server.entries()
            path, _ = self.journal.backup_data("entries.json", json.dumps({"entries": entries}, indent=1))
            changes.append(f"exported {len(entries)} registration entries to {path}")
            self.journal.set_fact("entries_before", len(entries))
        return self.finish("guide_step_3", changes)

    # -- step 4 -----------------------------------------------------------------
    def configs_planned(self, sides: tuple[str, ...] = ("server", "agent")
                        ) -> tuple[SpireConfig | None, SpireConfig | None, SpireConfig | None, SpireConfig | None]:
        """(server now, server wanted, agent now, agent wanted), HCL or JSON alike; None for a side
        not in ``sides`` (a fleet's server host has no agent.conf, an agent node no server.conf)."""
        name = attestor.plugin_name(self.t)
        srv = srv_new = agt = agt_new = None
        if "server" in sides:
            srv = load_config(self.t.server.config)
            finalized = "join_token" not in srv.plugins("NodeAttestor") and name in srv.plugins("NodeAttestor")
            srv_new = srv if finalized else srv.with_plugin("NodeAttestor", name, attestor.server_body(self.t))
        if "agent" in sides:
            agt = load_config(self.t.agent.config)
            agent_attestors = set(agt.plugins("NodeAttestor"))
            replacing = "join_token" if "join_token" in agent_attestors else None
            agt_new = agt.with_plugin("NodeAttestor", name, attestor.agent_body(self.t), replacing=replacing)
            for other in agent_attestors - {name, "join_token"}:
                agt_new = agt_new.without_plugin("NodeAttestor", other)
            for key in ("join_token", "join_token_file"):
                if key in agt_new.section("agent"):
                    agt_new = agt_new.without_setting("agent", key)
        return srv, srv_new, agt, agt_new

    @holds_server_lock
    def step4_configure(self) -> StepResult:
        """The guide's setup_tpm.sh, on real SPIRE: server gets the TPM attestor next to
        join_token; the agent gets exactly one NodeAttestor, the TPM one."""
        notes = attestor.check_inputs(self.t)
        srv, srv_new, agt, agt_new = self.configs_planned()
        changes = []
        if shutil.which("tpm2_pcrread") is None:
            if self.t.journal.allow_installs and not self.plan:
                subprocess.run(["apt-get", "install", "-y", "tpm2-tools"], check=True, capture_output=True)
                changes.append("installed tpm2-tools")
            else:
                notes.append("tpm2-tools not installed (not needed: the suite reads the TPM with tpm2-pytss)")
        for path in (self.t.server.config, self.t.agent.config):
            refuse_link(path)  # both, before either is written
        for cfg in (srv, agt):
            if len(lines := cfg.plugins_block_lines()) > 1:
                notes.append(f"{cfg.name}: {len(lines)} plugins blocks (lines {lines}): SPIRE reads only the "
                             f"first (line {lines[0]}); the TPM attestor goes there, the others are ignored")
        for now, new, path in ((srv, srv_new, self.t.server.config), (agt, agt_new, self.t.agent.config)):
            if now.text != new.text:
                diff = now.diff(new, str(path))
                if not self.plan:
                    if not self.journal.has_backup(path.name):
                        raise MigrationError(f"no backup of {path} in the journal", expected="step 3 done",
                                             found="no backup", remedy="run the migration from step 1")
                    write_file(path, new.text)
                    checkpoint(f"guide_step_4:{path.name} written")
                changes.append(f"{'changed' if not self.plan else 'change'} {path}:\n{diff}")
        return self.finish("guide_step_4", changes, notes)

    # -- step 5 -----------------------------------------------------------------
    @holds_server_lock
    def step5_stop_phase3(self) -> StepResult:
        """Stop the Phase 3 server (by pid, never by name), only once SPIRE is known to start
        again with the Phase 4 configs (``startcheck``). The agent keeps running: it serves its
        cached SVIDs while the server restarts, and is switched in step 6, after its entries
        exist under its new ID (make before break)."""
        changes: list[str] = []
        server = services.server_proc(self.t)
        stop_server = server is not None and services.started_before(server, self.t.server.config)
        notes: list[str] = []
        if stop_server or self._agent_to_switch() is not None:
            if self.plan:
                notes.append("before stopping: `spire-server validate` and `spire-agent validate` on the Phase 4 "
                             "configs, trust domain, data directories, sockets and bind port checked")
            else:
                notes += startcheck.check_before_stop(self.t, load_config(self.t.server.config),
                                                      load_config(self.t.agent.config),
                                                      server.pid if server else None)
        if stop_server:
            if not self.plan:
                services.stop_server(self.t)
            changes.append(f"stop spire-server pid {server.pid} (it runs the config from before step 4)")
        if (agent := services.agent_proc(self.t)) is not None:
            notes.append(f"spire-agent pid {agent.pid} keeps running on its cached SVID while the server restarts")
            if stop_server and not self.plan:
                notes.append(self._served_while_server_down())
        return self.finish("guide_step_5", changes, notes)

    def _served_while_server_down(self) -> str:
        """One live SVID fetch and mTLS exchange in the workload, the server stopped (evidence only:
        a failure here is reported, never a reason to leave the server down)."""
        try:
            res = self.node.runtime.check(self.t.thresholds.start_timeout_s)
        except Exception as exc:  # noqa: BLE001 - evidence, not a gate
            return f"with the server stopped, the workload's check failed: {redact(str(exc))[:200]}"
        ok = res.get("verified") and res.get("spiffe_id") == self.t.workload.spiffe_id
        return (f"with the server stopped, the workload {'fetched its SVID from the agent and verified its peer' if ok else 'check answered'}"
                f" ({redact(str(res))[:160]})")

    def _agent_to_switch(self):
        """The running agent if it still is the Phase 3 one (join_token, or started before step 4)."""
        agent = services.agent_proc(self.t)
        if agent is None:
            return None
        ident = services.agent_id_from_data(_read(services.agent_data_file(self.t))) or ""
        if is_join_token_agent(ident) or services.started_before(agent, self.t.agent.config):
            return agent
        return None

    # -- step 6 -----------------------------------------------------------------
    @holds_server_lock
    def step6_start_phase4(self) -> StepResult:
        """Server first (polled until healthy, both attestors); then make before break: the old
        agent's entries are created under the new agent ID (known from the DevID certificate);
        only then the agent is restarted with NO join token. On a failure Phase 3 is put back
        (see :meth:`_or_phase3_back`)."""
        return self._or_phase3_back("guide_step_6", self._start_phase4)

    def _start_phase4(self) -> StepResult:
        changes = []
        if services.server_proc(self.t) is None:
            if not self.plan:
                services.start_server(self.t)
            changes.append("start spire-server and wait until healthy")
        changes += self.make()
        if (agent := self._agent_to_switch()) is not None:
            if not self.plan:
                services.stop_agent(self.t)
            changes.append(f"stop the Phase 3 spire-agent pid {agent.pid}")
        if services.agent_proc(self.t) is None:
            if not self.plan:
                changes += self._start_tpm_agent()
            else:
                changes.append("start spire-agent without any join token and wait until attested")
        return self.finish("guide_step_6", changes)

    def make(self) -> list[str]:
        """Make before break: every entry of the old agent (and every node alias selecting it)
        gets its copy for the new agent ID, before the agent switches; nothing is deleted."""
        old, new = self.old_agent_id(), attestor.expected_agent_id(self.t)
        if not old or not new or self.t.attestor.node_alias:
            return []   # the node alias mode (guide's Option 2) needs the TPM selectors: step 8
        if self.plan and not self.node.server.healthy():
            return [f"create the old agent's entries for {new} before the agent restarts"]
        plan = reparent_plan(self.node.server, old, new, self.t.server_id)
        if self.plan:
            return plan.lines()[:len(plan.create)]
        return apply_make(self.node.server, plan)

    def _start_tpm_agent(self, identify=None) -> list[str]:
        """Drop the cached join_token SVID (backed up, key set aside), start the agent without
        a join token and wait until it has attested (its new ID proven by ``identify``)."""
        changes = []
        if services.agent_data_file(self.t).exists() and is_join_token_agent(
                services.agent_id_from_data(_read(services.agent_data_file(self.t)))):
            changes += restore.back_up_agent_identity(self.t, self.journal)
            services.forget_agent_svid(self.t)
            changes.append("dropped the agent's cached join_token SVID (backed up) so it attests with the TPM")
        tpm.flush_transients(self.t.tpm)
        info = services.start_agent(self.t, join_token=None)
        new = services.wait_agent_ready(self.t, info, identify)
        changes.append(f"started spire-agent pid {info.pid} without a join token; it attested as {new}")
        return changes

    # -- step 7 -----------------------------------------------------------------
    def step7_verify_tpm_attestation(self) -> StepResult:
        """The guide's verify_tpm.sh: agent ID, attestation type, TPM selectors, agent log;
        on a failure Phase 3 is put back."""
        if self.plan:
            return self.finish("guide_step_7", [], [f"expect agent ID {self.new_agent_id()}"])
        return self._or_phase3_back("guide_step_7", self._verify_tpm_attestation)

    def _verify_tpm_attestation(self) -> StepResult:
        fail_point("guide_step_7")
        node = self.node
        ident = node.agent_id() or ""
        want = attestor.expected_agent_id(self.t)
        record = node.agent_record(ident) or {}
        sels = [f"{s['type']}:{s['value']}" for s in record.get("selectors") or []]
        problems = []
        if want and ident != want:
            problems.append(f"agent ID {redact(ident)} is not {want}")
        if record.get("attestation_type") != self.t.attestor.profile:
            problems.append(f"server lists attestation type {record.get('attestation_type')!r}")
        if not any(s.startswith(f"{self.t.attestor.profile}:") for s in sels):
            problems.append(f"no {self.t.attestor.profile} selectors (found {sels})")
        log = services.log_text(self.t, "agent")   # agent.log, or the unit's journal
        if "Node attestation was successful" not in log or ident not in log:
            problems.append("the agent log does not show a successful node attestation for this ID")
        if problems:
            raise MigrationError("TPM attestation is not active", expected=f"agent {want} attested by "
                                 f"{self.t.attestor.profile}", found="; ".join(problems),
                                 remedy="see the guide's Issue 1; `pytest -m diagnose` names the cause")
        self.journal.set_fact("new_agent_id", ident)
        self.journal.set_fact("tpm_selectors", sels)
        restore.drop_old_agent_key(self.t)
        return self.finish("guide_step_7", [], [f"TPM ATTESTATION IS ACTIVE: {ident}", *sels])

    # -- step 8 -----------------------------------------------------------------
    def step8_reregister(self) -> StepResult:
        """Re-parent every entry of the old agent under the new one; fix node aliases."""
        old, new = self.old_agent_id(), self.new_agent_id()
        if not old or not new:
            raise MigrationError("cannot tell the old and new agent IDs", expected="both known",
                                 found=f"old {redact(str(old))}, new {new}", remedy="run steps 1-7 first")
        server = self.node.server
        parent = new
        changes: list[str] = []
        alias = self.t.attestor.node_alias
        if alias:  # the intent of the guide's "Option 2", done the way SPIRE matches it
            parent = alias
            sels = self.journal.fact("tpm_selectors") or []
            want = sorted(s for s in sels if s.startswith(f"{self.t.attestor.profile}:") and ":subject:" in s)
            have = server.entries(spiffeID=alias)
            if not have:
                if not self.plan:
                    res = server.create_entries([{"spiffe_id": alias, "parent_id": self.t.server_id,
                                                  "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in want]}])
                    if res.failed:
                        raise SpireError("node alias entry not created", expected="status 0", found=str(res.failed))
                changes.append(f"create node alias {alias} with TPM node selectors {want}")
        plan = reparent_plan(server, old, parent, self.t.server_id)
        if self.plan:
            changes += plan.lines()
        else:
            changes += apply_reparent(server, plan)
            if server.agent(old) is not None:
                server.evict(old)
                changes.append(f"evicted the retired join_token agent {redact(old)}")
        return self.finish("guide_step_8", changes)

    # -- step 9 -----------------------------------------------------------------
    def step9_deploy(self) -> StepResult:
        """Deploy the Phase 4 workload through the target's runtime."""
        rt = self.node.runtime
        rt.check_reachable()
        new = self.new_agent_id()
        lines = rt.plan_deploy(4, new)
        if lines and not self.plan:
            self.journal.set_fact("deployed_at", datetime.now(timezone.utc).isoformat())
            rt.deploy(4, new, timeout=self.t.thresholds.start_timeout_s)
        return self.finish("guide_step_9", lines)

    # -- step 10 ----------------------------------------------------------------
    def step10_verify(self) -> StepResult:
        """End to end: an SVID for the workload from the TPM-attested agent, mTLS VERIFIED."""
        if self.plan:
            return self.finish("guide_step_10", [], ["expect the workload to log VERIFIED"])
        rt = self.node.runtime
        since = self.journal.fact("deployed_at")
        since_dt = datetime.fromisoformat(since) if since else None
        timeout = self.t.thresholds.start_timeout_s
        client = [i for i in rt.instances() if i.phase == 4 and i.state.lower() == "running"]
        if not client:
            raise MigrationError("no Phase 4 workload is running", expected="the Phase 4 workload",
                                 found=str([(i.name, i.state, i.phase) for i in rt.instances()]),
                                 remedy="re-run step 9")
        lines = []
        for inst in client:
            lines.append(rt.wait_for_log(inst, "Successfully fetched SVIDs", timeout, since_dt))
            lines.append(rt.wait_for_log(inst, "VERIFIED", timeout, since_dt))
        result = rt.check(timeout)
        if not result.get("verified") or result.get("spiffe_id") != self.t.workload.spiffe_id:
            raise MigrationError("the workload's mTLS check failed after the migration",
                                 expected=f"verified, SVID {self.t.workload.spiffe_id}", found=str(result))
        self.journal.set_fact("migrated_at", datetime.now(timezone.utc).isoformat())
        return self.finish("guide_step_10", [], [redact(x) for x in lines] + [f"check: {result}"])

    def _or_phase3_back(self, step: str, perform: Callable[[], StepResult]) -> StepResult:
        """``perform``; if it fails, Phase 3 is put back by itself (``restore``)."""
        if self.plan:
            return perform()
        return restore.or_phase3_back(step, perform, self.t, self.journal, self.old_agent_id, self.log)

    STEPS = ("step1_verify_phase3", "step2_verify_tpm", "step3_backup", "step4_configure",
             "step5_stop_phase3", "step6_start_phase4", "step7_verify_tpm_attestation",
             "step8_reregister", "step9_deploy", "step10_verify")

    def run(self) -> list[StepResult]:
        """All ten steps in order (what `pytest -m migrate` does, without pytest)."""
        return [getattr(self, name)() for name in self.STEPS]


def _read(path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _user_can_open(user: str, info: tpm.TPMInfo) -> bool:
    import grp
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {pw.pw_gid}
    mode = info.mode or 0
    if info.owner_uid == pw.pw_uid:
        return bool(mode & 0o600 == 0o600)
    if info.owner_gid in groups:
        return bool(mode & 0o060 == 0o060)
    return bool(mode & 0o006 == 0o006)
