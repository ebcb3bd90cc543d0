"""The guide's Rollback Procedure for one node of a fleet, in parts, make before break.

Order (the server keeps running in dual mode: other nodes may be TPM-attested):

    server host   RollbackToken    from the node's migration handoff: a new join token for the
                                   node (short TTL, ``-spiffeID`` its node alias), written ONLY
                                   to a 0600 file in the server host's journal of that node;
                                   make: the TPM agent's entries copied for the join_token agent
                                   ID that token will give (SPIRE names it after the token)
    (controller)                   the token file copied to the node with no_log, removed on the
                                   server host (fleet/rollback.yml)
    agent node    AgentRollback    rollback steps 1-4: the TPM agent stopped by pid, agent.conf
                                   restored from the journal, the TPM SVID dropped (backed up),
                                   the agent started with the token, join_token attestation
                                   proven by its own bundle and key, the token file removed, the
                                   rollback handoff written, the Phase 3 workload VERIFIED; a
                                   failure before the join_token agent is proven puts the TPM
                                   agent back (its agent.conf, cached SVID and key)
    server host   RollbackReparent break: once the server lists the node's join_token agent, the
                                   TPM agent's entries deleted by ID, the TPM agent evicted

The token is a :class:`~spire_migration.secret.Secret`: never printed, logged, journaled or
put on a command line; the server host records only its fingerprint, which is how it tells the
node's new join_token agent (``join_token/<redacted:FP>``) from any other: a handoff naming
another agent is refused.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from spire_migration.checks import premigration
from spire_migration.config.target import Target
from spire_migration.errors import ConfigError, MigrationError, SpireError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.node import services
from spire_migration.node.spiffe_ids import is_join_token_agent, is_tpm_agent
from spire_migration.node.spire import id_str, selector_strs
from spire_migration.procedures import restore
from spire_migration.procedures.parts import Handoff, check_new_agent, handoff_fields
from spire_migration.procedures.reregister import apply_break, apply_make, reparent_plan
from spire_migration.procedures.rollback import Rollback
from spire_migration.procedures.steprun import JournaledRun, StepResult
from spire_migration.records.journal import Journal
from spire_migration.redact import fingerprint, redact
from spire_migration.secret import Secret

TOKEN_FILE = "rollback-token"              # in <journal dir>/<node>/ on the server host and on the node
ROLLBACK_HANDOFF = "rollback-handoff.json"
TPM_AGENT_DATA = "tpm-agent-data.json"      # node journal backup: the TPM agent's cached SVID
TPM_CONF = "agent.conf.phase4"              # node journal backup: the Phase 4 agent.conf
TPM_ASIDE = ".phase4"                       # the TPM agent's keys.json, set aside until join_token is proven
TRANSPORT_S = 120                           # the token's extra life: the trip through the controller
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,128}")
_JT_REDACTED = re.compile(r"spiffe://([a-z0-9._-]+)/spire/agent/join_token/<redacted:([0-9a-f]{8})>")

T = TypeVar("T")


def token_path(journal_root: Path) -> Path:
    return journal_root / TOKEN_FILE


def redacted_join_token_id(trust_domain: str, fp: str) -> str:
    return f"spiffe://{trust_domain}/spire/agent/join_token/<redacted:{fp}>"


# -- the rollback handoff: what the node tells the server host -------------------------
@dataclass(frozen=True)
class RollbackHandoff:
    """The node's new join_token agent (redacted) and its TPM agent; no secret in it.

    >>> h = RollbackHandoff("node-1", "spiffe://example.org/spire/agent/join_token/<redacted:0a1b2c3d>",
    ...                     "spiffe://example.org/spire/agent/tpm_devid/ab12", "example.org")
    >>> RollbackHandoff.parse(h.to_json(), "example.org") == h
    True
    """

    node: str
    new_agent: str   # the join_token agent, redacted
    tpm_agent: str
    trust_domain: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def parse(cls, text: str, trust_domain: str) -> "RollbackHandoff":
        data, bad = handoff_fields(cls, text, "rollback handoff", f"the node, its redacted join_token agent ID "
                                   f"and its TPM agent ID in {trust_domain}", "run the rollback's agent part on "
                                   "that node again and copy its rollback-handoff.json")
        h = cls(**data)
        m = _JT_REDACTED.fullmatch(h.new_agent)
        if h.trust_domain != trust_domain or not m or m.group(1) != trust_domain or not is_tpm_agent(h.tpm_agent) \
                or not h.tpm_agent.startswith(f"spiffe://{trust_domain}/"):
            raise bad(f"{h.trust_domain}, {redact(h.new_agent)}, {h.tpm_agent}")
        return h


# -- server host, first: the token, and make --------------------------------------------
class ServerSide(JournaledRun):
    """What both server-host parts share: the node's journal there, the TPM agent, the token's agent."""

    def __init__(self, target: Target, journal: Journal, handoff: Handoff | RollbackHandoff, plan: bool = False,
                 log: Callable[[str], None] = lambda s: None) -> None:
        super().__init__(target, journal, plan, log)
        self.handoff = handoff

    @property
    def tpm_agent(self) -> str:
        h = self.handoff
        return h.new_agent if isinstance(h, Handoff) else h.tpm_agent

    def token_agent(self) -> str | None:
        """The join_token agent the node's new token made (matched by fingerprint), if listed."""
        fp = self.journal.fact("rollback_issued_fp")
        if not fp:
            return None
        want = redacted_join_token_id(self.t.trust_domain, fp)
        found = [id_str(a["id"]) for a in services.server_cli(self.t).agents() if redact(id_str(a["id"])) == want]
        return found[0] if len(found) == 1 else None

    def tpm_listed(self) -> bool:
        return services.server_cli(self.t).agent(self.tpm_agent) is not None


class RollbackToken(ServerSide):
    """On the server host, from the node's migration handoff (checked as the make part checks it)."""

    STEPS = ("issue",)

    def issue(self) -> StepResult:
        """Rollback step 3, the server's first half: a new join token for the node, only in a 0600
        file; the TPM agent's entries made for the join_token agent ID the token gives."""
        check_new_agent(self.t, self.handoff)
        h, server, path = self.handoff, services.server_cli(self.t), token_path(self.journal.root)
        if self.token_agent() is not None or (not self.tpm_listed() and self.journal.done("rollback_step_3_break")):
            return self.finish("rollback_step_3_token", [], [f"{h.node} already attested with its new join token"])
        if not self.tpm_listed():
            raise SpireError(f"the server lists no TPM agent {h.new_agent}", expected=f"the TPM agent of {h.node}",
                             found="not listed", remedy="is this node migrated? (`spire-migration validate` on it)")
        if path.is_file() and self.journal.fact("rollback_issued_for") == h.new_agent and \
                time.time() < self.journal.fact("rollback_issued_until", 0):
            return self.finish("rollback_step_3_token", [], [f"a token for {h.node} waits in {path}"])
        alias = self.token_alias()
        if self.plan:
            return self.finish("rollback_step_3_token", [
                f"generate a join token for {h.node}{f' (-spiffeID {alias})' if alias else ''} into {path} (0600)",
                f"create every entry of {h.new_agent} for the join_token agent that token gives"])
        changes = self._unmake_unused()
        ttl = services.token_ttl(self.t) + TRANSPORT_S
        token = server.token_generate(spiffe_id=alias, ttl=ttl)
        refuse_link(path)
        write_file(path, token.reveal() + "\n", mode=0o600)
        for key, value in (("rollback_issued_fp", fingerprint(token.reveal())), ("rollback_issued_for", h.new_agent),
                           ("rollback_issued_until", time.time() + ttl)):
            self.journal.set_fact(key, value)
        new = f"spiffe://{self.t.trust_domain}/spire/agent/join_token/{token.reveal()}"
        changes.append(f"generated a join token for {h.node}{f' for {alias}' if alias else ''} (TTL {ttl} s) "
                       f"into {path} (0600): it is shown nowhere else")
        changes += apply_make(server, reparent_plan(server, h.new_agent, new, self.t.server_id))
        return self.finish("rollback_step_3_token", changes, [f"the new agent will be {redact(new)}"])

    def token_alias(self) -> str | None:
        """The node alias the first token was generated with: the migration moved its entry under
        the TPM agent, still selecting that agent (``spiffe_id:<TPM agent>``)."""
        for e in services.server_cli(self.t).entries(parentID=self.tpm_agent):
            if f"spiffe_id:{self.tpm_agent}" in selector_strs({"selectors": e.get("selectors")}):
                return id_str(e["spiffe_id"])
        return None

    def _unmake_unused(self) -> list[str]:
        """An earlier token that was never used: the entries made for its agent (and its alias) go."""
        fp = self.journal.fact("rollback_issued_fp")
        token_path(self.journal.root).unlink(missing_ok=True)
        if not fp:
            return []
        server, want = services.server_cli(self.t), redacted_join_token_id(self.t.trust_domain, fp)
        ids = [e["id"] for e in server.entries() if redact(id_str(e["parent_id"])) == want]
        if ids:
            res = server.delete_entries(ids)
            if res.failed:
                raise SpireError("the entries made for an unused token could not be deleted", expected="status 0",
                                 found=str(res.failed[:3]), remedy="run the token part again")
        self.journal.set_fact("rollback_issued_fp", None)
        return [f"deleted {len(ids)} entries made for the unused token {want}"] if ids else []


# -- server host, last: break ------------------------------------------------------------
class RollbackReparent(ServerSide):
    """On the server host, from the node's rollback handoff (checked against what the token part recorded)."""

    STEPS = ("break_",)

    def _check(self) -> str | None:
        h, fp = self.handoff, self.journal.fact("rollback_issued_fp")
        if not fp or h.new_agent != redacted_join_token_id(self.t.trust_domain, fp) or \
                h.tpm_agent != self.journal.fact("rollback_issued_for"):
            raise ConfigError(f"the rollback handoff of {h.node} names agents this server host did not issue "
                              "its token for", expected=f"the join_token agent of the token issued for {h.node} "
                              f"(<redacted:{fp}>) and {self.journal.fact('rollback_issued_for')}",
                              found=f"{h.new_agent}, {h.tpm_agent}",
                              remedy="run the token part and the agent part again; never edit a handoff by hand")
        return self.token_agent()

    def break_(self) -> StepResult:
        """Rollback step 3, the server's last half: once the server lists the node's join_token agent,
        whatever is still missing made (idempotent), the TPM agent's entries deleted, the TPM agent evicted."""
        h, server = self.handoff, services.server_cli(self.t)
        new = self._check()
        record = server.agent(new) if new else None
        if record is None or record.get("attestation_type") != "join_token":
            if self.journal.done("rollback_step_3_break") and not self.tpm_listed():
                return self.finish("rollback_step_3_break", [], [f"{h.node}: rolled back before"])
            raise MigrationError(f"the server does not list {h.node}'s new join_token agent: nothing is deleted",
                                 expected=f"{h.new_agent} attested by join_token",
                                 found=f"{record.get('attestation_type') if record else 'not listed'}",
                                 remedy="run the rollback's agent part on the node first")
        plan = reparent_plan(server, h.tpm_agent, new, self.t.server_id)
        changes: list[str] = []
        if self.plan:
            changes += plan.lines() + ([f"evict {h.tpm_agent}"] if self.tpm_listed() else [])
        else:
            changes += apply_make(server, plan)
            changes += apply_break(server, reparent_plan(server, h.tpm_agent, new, self.t.server_id))
            if self.tpm_listed():
                server.evict(h.tpm_agent)
                changes.append(f"evicted the TPM agent {h.tpm_agent}")
        return self.finish("rollback_step_3_break", changes, [f"{h.node}: {redact(new)} attested by join_token"])


# -- the node ------------------------------------------------------------------------------
class AgentRollback(Rollback):
    """On the agent node (no server API here): the guide's rollback steps 1-4 for this node."""

    STEPS = ("node_stop_tpm_agent", "node_restore_agent_conf", "node_start_join_token_agent", "node_verify_phase3")
    #: kept under backups/cycle-N/ once the rollback is complete
    cycle_backups = Rollback.cycle_backups + (TPM_CONF, TPM_AGENT_DATA)
    _join_token_proven = False

    # -- the token the server host issued ---------------------------------------------
    def token_file(self) -> Path:
        return token_path(self.t.journal_root)

    def read_token(self) -> Secret:
        """The token from its file: a regular 0600 file of this user, never a link; refused otherwise."""
        path = self.token_file()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise MigrationError("no join token for this node's rollback", expected=f"{path} (0600), written by "
                                 "`spire-migration rollback --part token` on the server host", found="no such file",
                                 remedy="run the token part on the server host and copy its file here "
                                        "(fleet/rollback.yml does both)") from None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise MigrationError(f"{path} is not a private file of this user", expected="a regular file, mode 0600",
                                 found=f"mode {stat.S_IMODE(st.st_mode):o}, uid {st.st_uid}, "
                                       f"{'regular' if stat.S_ISREG(st.st_mode) else 'not a regular file'}",
                                 remedy="remove it and copy the token again (0600)")
        value = path.read_text().strip()
        if not _TOKEN.fullmatch(value):
            raise MigrationError(f"{path} does not hold a join token", expected="one token (letters, digits, '-')",
                                 found=f"{len(value)} characters", remedy="copy the token part's file again")
        return Secret(value)

    def tpm_agent(self) -> str | None:
        ident = self.journal.fact("rollback_tpm_agent") or self.journal.fact("new_agent_id")
        return ident if is_tpm_agent(ident) else self.tpm_agent_id()

    # -- the way back to the TPM agent --------------------------------------------------
    def _or_tpm_back(self, step: str, perform: Callable[[], T]) -> T:
        """``perform``; if it fails before the join_token agent is proven, the TPM agent is put back."""
        try:
            return perform()
        except Exception as exc:
            if self.plan or not self.journal.has_backup(TPM_CONF) or self._join_token_proven:
                raise   # nothing stopped yet, or the join_token agent already serves: no put-back
            cause = redact(str(exc))
            try:
                done = self.put_tpm_agent_back()
            except Exception as again:
                raise MigrationError(f"{step} failed, and the TPM agent could not be put back",
                                     expected="a running SPIRE agent", found=f"cause: {cause}\nput back: "
                                     f"{redact(str(again))}", remedy="start the agent by hand (agent.conf "
                                     f"from {self.journal.backups / TPM_CONF}); then run the rollback again") from exc
            raise MigrationError(f"{step} failed: the TPM agent was put back (it serves again)",
                                 expected=f"{step} to pass", found=f"cause: {cause}\nput back: " + "; ".join(done),
                                 remedy="fix the cause, then run the token part and this part again") from exc

    def put_tpm_agent_back(self) -> list[str]:
        """The TPM agent's agent.conf, cached SVID and key back; the agent started; its ID proven."""
        done = [f"stopped spire-agent pid {info.pid}" for info in [services.stop_agent(self.t)] if info]
        refuse_link(self.t.agent.config)
        write_file(self.t.agent.config, self.journal.verify_backup(TPM_CONF).read_bytes())
        done.append(f"restored the Phase 4 {self.t.agent.config} from the journal")
        done += restore.put_agent_identity_back(self.t, self.journal, TPM_AGENT_DATA, TPM_ASIDE)
        info = services.start_agent(self.t)
        ident = services.wait_agent_ready(self.t, info, services.node_agent_identity)
        if ident != self.tpm_agent():
            raise MigrationError("the TPM agent could not be put back", expected=f"agent {self.tpm_agent()}",
                                 found=f"agent {redact(str(ident))}", remedy="read the agent log")
        done.append(f"started spire-agent pid {info.pid}: it serves again as {ident}")
        for name in (TPM_CONF, TPM_AGENT_DATA):   # a later attempt backs up the identity it then finds
            self.journal.data["backups"].pop(name, None)
            (self.journal.backups / name).unlink(missing_ok=True)
        self.token_file().unlink(missing_ok=True)   # it may be spent: the token part issues a new one
        for n in (1, 2, 3):
            self.journal.reset(f"rollback_step_{n}")
        self.log("restore: " + "; ".join(done))
        return done

    # -- step 1 --------------------------------------------------------------------------
    def node_stop_tpm_agent(self) -> StepResult:
        """Stop the TPM agent by pid, once the way back (the Phase 3 agent.conf backup) and the way
        forward (the token) are both here; its agent.conf, cached SVID and key kept for a put-back."""
        if self.step_done(1):
            return self._result(1, [], ["already done in this rollback"])
        self._require_migration()
        self.journal.verify_backup("agent.conf")
        refuse_link(self.t.agent.config)
        ident = services.node_agent_identity(self.t)
        if not self.plan:
            self.read_token()
        if not is_tpm_agent(ident):
            raise MigrationError("the node's agent is not the TPM agent", expected=f"agent {self.tpm_agent()}",
                                 found=f"agent {redact(str(ident))}", remedy="`spire-migration validate` on this node")
        changes: list[str] = []
        agent = services.agent_proc(self.t)
        if self.plan:
            return self._result(1, [f"stop spire-agent pid {agent.pid}"] if agent else [])
        self.journal.set_fact("rollback_tpm_agent", ident)
        self.journal.backup_file(TPM_CONF, self.t.agent.config)
        if agent is not None:
            services.stop_agent(self.t)
            changes.append(f"stopped the TPM spire-agent pid {agent.pid} ({ident})")
        return self._or_tpm_back("rollback_step_1", lambda: self._result(1, changes + self._keep_tpm_identity()))

    def _keep_tpm_identity(self) -> list[str]:
        return restore.back_up_agent_identity(self.t, self.journal, TPM_AGENT_DATA, TPM_ASIDE, which="TPM")

    # -- step 2 --------------------------------------------------------------------------
    def node_restore_agent_conf(self) -> StepResult:
        """agent.conf byte for byte from the journal's hash-checked backup (server.conf stays:
        the server, on its own host, keeps both attestors for the other nodes)."""
        if self.step_done(2):
            return self._result(2, [], ["already done in this rollback"])
        return self._or_tpm_back("rollback_step_2", self._restore_agent_conf)

    def _restore_agent_conf(self) -> StepResult:
        self._require_migration()
        backup = self.journal.verify_backup("agent.conf")
        refuse_link(self.t.agent.config)
        changes = []
        if backup.read_bytes() != self.t.agent.config.read_bytes():
            if not self.plan:
                write_file(self.t.agent.config, backup.read_bytes())
            changes.append(f"{'restore' if self.plan else 'restored'} {self.t.agent.config} from {backup}")
        return self._result(2, changes, ["server.conf is the server host's: it keeps both attestors"])

    # -- step 3 --------------------------------------------------------------------------
    def node_start_join_token_agent(self) -> StepResult:
        """The TPM SVID dropped (backed up), the agent started with the new token (0600 file,
        never a command line), its join_token ID proven by its own bundle and key and matched to the
        token; then the token file removed and the rollback handoff written."""
        if self.step_done(3):
            return self._result(3, [], ["already done in this rollback"])
        if self.plan:
            return self._result(3, ["drop the TPM agent's cached SVID; start spire-agent with the new join token",
                                    f"write {self.t.journal_root / ROLLBACK_HANDOFF}"])
        return self._or_tpm_back("rollback_step_3", self._start_join_token_agent)

    def _start_join_token_agent(self) -> StepResult:
        changes: list[str] = []
        ident = services.node_agent_identity(self.t) if services.agent_proc(self.t) else None
        if is_join_token_agent(ident):   # resumed: the agent attested with the new token before
            want = redact(str(ident))
        else:
            token = self.read_token()
            if services.agent_proc(self.t) is not None:
                changes.append(f"stopped spire-agent pid {services.stop_agent(self.t).pid}")
            if services.forget_agent_svid(self.t):
                changes.append("dropped the TPM agent's cached SVID (kept in the journal)")
            info = services.start_agent(self.t, join_token=token, identify=services.node_agent_identity)
            ident = services.wait_agent_ready(self.t, info, services.node_agent_identity)
            changes.append(f"started spire-agent pid {info.pid} with the new join token (a 0600 file, removed): "
                           f"it attested as {redact(ident)}")
            want = redacted_join_token_id(self.t.trust_domain, fingerprint(token.reveal()))
            if redact(str(ident)) != want:
                raise MigrationError("the agent is not the join_token agent of the new token", expected=want,
                                     found=redact(str(ident)), remedy="read the agent log")
        self._join_token_proven = True   # from here on a failure leaves this agent serving
        log = services.log_text(self.t, "agent")
        if "Node attestation was successful" not in log:
            raise MigrationError("the agent log shows no successful node attestation", expected="a successful one",
                                 found="none", remedy="read the agent log")
        if self.token_file().exists():
            self.token_file().unlink()
            changes.append(f"removed {self.token_file()}")
        handoff = RollbackHandoff(self.t.node, want, str(self.tpm_agent()), self.t.trust_domain)
        write_file(self.t.journal_root / ROLLBACK_HANDOFF, handoff.to_json(), mode=0o600)
        changes.append(f"wrote the rollback handoff for the server host to {self.t.journal_root / ROLLBACK_HANDOFF}")
        self.journal.set_fact("rollback_new_agent", want)
        restore.drop_old_agent_key(self.t, TPM_ASIDE)
        return self._result(3, changes, [f"JOIN_TOKEN ATTESTATION IS ACTIVE: {want}"])

    # -- step 4 --------------------------------------------------------------------------
    def node_verify_phase3(self) -> StepResult:
        """The Phase 3 workload redeployed; the agent healthy; the workload fetched its SVID from the
        join_token agent and logged VERIFIED; then the migration journal reset for a new cycle."""
        if self.step_done(4):
            return self._result(4, self.retire_cycle(), ["already done in this rollback"])
        self._require_migration()
        rt = self.node.runtime
        rt.check_reachable()
        lines = rt.plan_deploy(3, None)
        if self.plan:
            return self._result(4, lines, ["expect the workload to log VERIFIED"])
        if lines:
            self.journal.set_fact("rollback_deployed_at", datetime.now(timezone.utc).isoformat())
            rt.deploy(3, None, timeout=self.t.thresholds.start_timeout_s)
        since = self.journal.fact("rollback_deployed_at")
        since_dt = datetime.fromisoformat(since) if since else None
        for inst in [i for i in rt.instances() if i.phase == 3 and i.state.lower() == "running"]:
            for line in ("Successfully fetched SVIDs", "VERIFIED"):
                rt.wait_for_log(inst, line, self.t.thresholds.start_timeout_s, since_dt)
        results = [premigration.agent_running(self.node), premigration.workload_verified(self.node, since_dt)]
        ident = services.node_agent_identity(self.t)
        problems = [r.message() for r in results if not r.ok]
        if redact(str(ident)) != self.journal.fact("rollback_new_agent"):
            problems.append(f"agent {redact(str(ident))}")
        check = rt.check(self.t.thresholds.start_timeout_s) if not problems else {}
        if problems or not check.get("verified"):
            raise MigrationError("Phase 3 is not working on this node after the rollback",
                                 expected="the join_token agent healthy, the workload VERIFIED",
                                 found="\n" + "\n".join(problems or [str(check)]),
                                 remedy="was the token part's make done? read the agent log; run this part again")
        self.journal.set_fact("rolled_back_at", datetime.now(timezone.utc).isoformat())
        result = self._result(4, lines, [r.title for r in results] + [f"check: {check}"])
        result.changes += self.retire_cycle()
        return result

