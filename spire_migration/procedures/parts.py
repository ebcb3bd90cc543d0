"""The migration in two parts, for a fleet: the server part once on the server host, the
agent part on each agent node, make before break.

Order (the guide stops everything and re-registers after; here no workload loses its SVID):

    server host   ServerPart      back up server.conf and every entry; the TPM attestor next to
                                  join_token; restart the server alone (agents serve from cache)
    agent node    AgentPart       prepare: Phase 3 check, TPM, back up agent.conf, agent.conf to
                                  one TPM attestor; writes the handoff (no secret in it)
    server host   Registration    make: the old agent's entries for the new agent ID
    agent node    AgentPart       switch: restart the agent without a join token; verify TPM
                                  attestation (a failure puts the node's Phase 3 back)
    server host   Registration    break: the server lists the new agent TPM-attested; the old
                                  entries deleted, the old agent evicted
    agent node    AgentPart       finish: redeploy and verify the workload

The registration runs where the server's API is (the server host), never on the node: the
node hands over only what the server cannot know (its new agent ID, from its DevID
certificate, which the server checks against its DevID CA) and the *redacted* old agent ID
(the join token never leaves the node), which names exactly one join_token agent on the server.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from spire_migration.checks import premigration
from spire_migration.config import attestor, startcheck
from spire_migration.config.hclconfig import load_config
from spire_migration.config.target import Target, check_node_name
from spire_migration.errors import ConfigError, MigrationError, SpireError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.node import services, tpm
from spire_migration.node.facade import Phase
from spire_migration.node.spiffe_ids import agent_kind, is_join_token_agent, is_tpm_agent
from spire_migration.node.spire import id_str, selector_strs
from spire_migration.procedures import restore
from spire_migration.procedures.migration import IDENTITY, Migration
from spire_migration.procedures.reregister import (apply_break, apply_make, cache_reload_s, reparent_plan,
                                                   wait_until_served)
from spire_migration.procedures.steprun import JournaledRun, StepResult
from spire_migration.records.journal import Journal
from spire_migration.records.locks import holds_server_lock
from spire_migration.redact import redact

HANDOFF = "handoff.json"
_REDACTED_JOIN_TOKEN_ID = re.compile(r"spiffe://([a-z0-9._-]+)/spire/agent/join_token/<redacted:[0-9a-f]{8}>")
_MAX_HANDOFF = 16 * 1024


# -- the handoff: what a node tells the server host ------------------------------------
@dataclass(frozen=True)
class Handoff:
    """What the agent part hands to the registration on the server host; no secret in it.

    >>> h = Handoff("node-1", "spiffe://example.org/spire/agent/join_token/<redacted:0a1b2c3d>",
    ...             "spiffe://example.org/spire/agent/tpm_devid/ab12", "tpm_devid", "example.org", "")
    >>> Handoff.parse(h.to_json(), "example.org", "tpm_devid") == h
    True
    """

    node: str
    old_agent: str      # redacted: spiffe://<td>/spire/agent/join_token/<redacted:FP>
    new_agent: str
    profile: str
    trust_domain: str
    devid_cert: str     # PEM (public): the server checks the new agent ID against it and its CA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def parse(cls, text: str, trust_domain: str, profile: str) -> "Handoff":
        """Parse and check a handoff against the server's own target; a ConfigError otherwise."""
        data, bad = handoff_fields(cls, text, "handoff", f"a node name, the redacted join_token agent ID, a "
                                   f"{profile} agent ID in {trust_domain}",
                                   "run the agent part (agent-prepare) on that node again and copy its handoff.json")
        h = cls(**data)
        if h.trust_domain != trust_domain or h.profile != profile:
            raise bad(f"trust domain {h.trust_domain!r}, profile {h.profile!r}")
        m = _REDACTED_JOIN_TOKEN_ID.fullmatch(h.old_agent)
        if not m or m.group(1) != trust_domain:
            raise bad(f"old agent {redact(h.old_agent)!r}")
        if agent_kind(h.new_agent) != profile or not h.new_agent.startswith(f"spiffe://{trust_domain}/"):
            raise bad(f"new agent {h.new_agent!r}")
        return h


def handoff_fields(cls: type, text: str, what: str, names: str, remedy: str) -> tuple[dict[str, str], Any]:
    """The fields of a handoff's JSON text (exactly the dataclass ``cls``'s, every one a string,
    the node's name allowed) and ``bad(found)``, the ConfigError for a field the caller refuses."""
    def bad(found: str) -> ConfigError:
        return ConfigError(f"the node's {what} is not acceptable", expected=(
            f"a JSON object with exactly {sorted(cls.__dataclass_fields__)}: {names}"), found=found, remedy=remedy)

    if len(text) > _MAX_HANDOFF:
        raise bad(f"{len(text)} bytes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__) or \
            not all(isinstance(v, str) for v in data.values()):
        raise bad(redact(repr(sorted(data) if isinstance(data, dict) else type(data).__name__)))
    check_node_name(data["node"])
    return data, bad


def handoff_path(t: Target) -> Path:
    """Where the agent part writes this node's handoff (its journal folder)."""
    return t.journal_root / HANDOFF


def _write_planned(run: Migration, now, new, path: Path, backup: str, remedy: str) -> list[str]:
    """Step 4 of one side: write ``new`` over ``path`` (never through a link, only once the
    journal holds its ``backup``); the change with its diff, or nothing when already so."""
    if now.text == new.text:
        return []
    refuse_link(path)
    if not run.plan:
        if not run.journal.has_backup(backup):
            raise MigrationError(f"no backup of {path} in the journal", expected="step 3 done",
                                 found="no backup", remedy=remedy)
        write_file(path, new.text)
    return [f"{'change' if run.plan else 'changed'} {path}:\n{now.diff(new, str(path))}"]


# -- the server part --------------------------------------------------------------------
class ServerPart(Migration):
    """On the server host, once per server; idempotent. The agents keep running."""

    STEPS = ("server_verify", "server_backup", "server_configure", "server_restart")

    def server_verify(self) -> StepResult:
        """Step 1, the server's half: its config parses, SPIRE accepts it, the server is healthy."""
        load_config(self.t.server.config).section("server")
        notes = attestor.check_inputs(self.t, sides=("server",))
        result = premigration.server_running(self.node)
        if not result.ok:
            raise SpireError("the SPIRE server is not running", expected="a healthy server",
                             found=result.found, remedy=result.remedy)
        return self.finish("guide_step_1", [], notes + [f"server healthy; {len(self.node.agents)} agents listed"])

    def server_backup(self) -> StepResult:
        """Step 3, the server's half: server.conf (hashed, 0600) and every registration entry."""
        changes = []
        if not self.journal.has_backup("server.conf"):
            changes.append(f"back up {self.t.server.config} into {self.journal.backups}")
            if not self.plan:
                self.journal.backup_file("server.conf", self.t.server.config)
        if not self.journal.has_backup("entries.json"):
            if self.plan:
                changes.append(f"export every registration entry to {self.journal.backups}")
            else:
                entries = self.node.server.entries()
                path, _ = self.journal.backup_data("entries.json", json.dumps({"entries": entries}, indent=1))
                self.journal.set_fact("entries_before", len(entries))
                changes.append(f"exported {len(entries)} registration entries to {path}")
        return self.finish("guide_step_3", changes)

    @holds_server_lock
    def server_configure(self) -> StepResult:
        """Step 4, the server's half: the TPM attestor next to join_token (none once finalized)."""
        notes = attestor.check_inputs(self.t, sides=("server",))
        srv, srv_new, _, _ = self.configs_planned(sides=("server",))
        changes = _write_planned(self, srv, srv_new, self.t.server.config, "server.conf", "run the server part again")
        return self.finish("guide_step_4", changes, notes)

    @holds_server_lock
    def server_restart(self) -> StepResult:
        """Steps 5 and 6, the server's half: the server alone restarts on its new config, only
        once SPIRE accepts it; the agents keep serving from their caches meanwhile."""
        changes: list[str] = []
        notes: list[str] = []
        server = services.server_proc(self.t)
        before = {id_str(a["id"]) for a in self.node.agents} if self.node.server.healthy() else set()
        if server is None or services.started_before(server, self.t.server.config):
            if not self.plan:
                notes += startcheck.check_before_stop(self.t, load_config(self.t.server.config), None,
                                                      server.pid if server else None)
                if server is not None:
                    services.stop_server(self.t)
                services.start_server(self.t)
            changes.append(f"restart spire-server{f' pid {server.pid}' if server else ''} alone with "
                           f"{self.t.server.config} and wait until healthy")
        if not self.plan:
            after = {id_str(a["id"]) for a in self.node.server.agents()}
            self.journal.set_fact("agents_before_restart", len(before))
            if before - after:
                raise SpireError("agents the server listed before its restart are gone",
                                 expected=f"the {len(before)} agents listed before",
                                 found=redact(str(sorted(before - after)[:5])),
                                 remedy="see the server log; the agents' cached SVIDs still serve workloads")
            notes.append(f"all {len(before)} agents listed before the restart are listed after it")
        return self.finish("guide_step_6", changes, notes)


# -- the agent part ---------------------------------------------------------------------
class AgentPart(Migration):
    """On an agent node (no server API here): prepare, switch, finish."""

    STEPS = ("agent_verify", "step2_verify_tpm", "agent_backup", "agent_configure",
             "agent_switch", "step9_deploy", "step10_verify")

    def old_agent_id(self) -> str | None:
        path = self.journal.backups / IDENTITY
        if path.exists():
            return json.loads(path.read_text())["old_agent_id"]
        ident = services.node_agent_identity(self.t)
        return ident if is_join_token_agent(ident) else None

    def new_agent_id(self) -> str | None:
        ident = services.node_agent_identity(self.t)
        return ident if is_tpm_agent(ident) else attestor.expected_agent_id(self.t)

    def agent_phase(self) -> Phase:
        ident = services.node_agent_identity(self.t)
        return Phase.PHASE4 if is_tpm_agent(ident) else Phase.PHASE3 if is_join_token_agent(ident) else Phase.UNKNOWN

    def agent_verify(self) -> StepResult:
        """Step 1, the node's half: the agent runs and is healthy, attested by join_token (its
        SVID proven against its own bundle and key), and its workload is VERIFIED."""
        load_config(self.t.agent.config).section("agent")
        notes = attestor.check_inputs(self.t, sides=("agent",))
        self.node.runtime.check_reachable()
        phase = self.agent_phase()
        if phase is Phase.PHASE4 and self.journal.done("guide_step_10"):
            return self.finish("guide_step_1", [], ["already migrated: nothing to verify"])
        if self.journal.done("guide_step_1"):
            return self.finish("guide_step_1", [], [f"resuming the agent part ({phase.value})"])
        if phase is not Phase.PHASE3:
            raise ConfigError("the node's agent is not attested by join_token and no journal explains it",
                              expected="Phase 3 (a join_token agent SVID)", found=phase.value,
                              remedy="run `spire-migration validate` on this node")
        failed = [r for r in (premigration.agent_running(self.node), premigration.workload_verified(self.node))
                  if not r.ok]
        if failed:
            raise MigrationError("Phase 3 is not working on this node: its agent part does not start",
                                 expected="the agent healthy and the workload VERIFIED",
                                 found="\n" + "\n".join(r.message() for r in failed), remedy="fix Phase 3 first")
        old = services.node_agent_identity(self.t) or ""
        if not self.plan:
            self.journal.backup_data(IDENTITY, json.dumps({"old_agent_id": old}))
            self.journal.set_fact("old_agent_id", redact(old))
        return self.finish("guide_step_1", [], notes + [f"Phase 3 verified; agent {redact(old)}"])

    def agent_backup(self) -> StepResult:
        """Step 3, the node's half: agent.conf (hashed, 0600)."""
        changes = []
        if not self.journal.has_backup("agent.conf"):
            changes.append(f"back up {self.t.agent.config} into {self.journal.backups}")
            if not self.plan:
                self.journal.backup_file("agent.conf", self.t.agent.config)
        return self.finish("guide_step_3", changes)

    def agent_configure(self) -> StepResult:
        """Step 4, the node's half: agent.conf to exactly one NodeAttestor, the TPM one; then
        the handoff for the server host."""
        _, _, agt, agt_new = self.configs_planned(sides=("agent",))
        changes = _write_planned(self, agt, agt_new, self.t.agent.config, "agent.conf", "run agent-prepare again")
        handoff = self.handoff()
        path = handoff_path(self.t)
        have = path.read_text() if path.is_file() else None
        if have != handoff.to_json():
            if not self.plan:
                write_file(path, handoff.to_json(), mode=0o600)
            changes.append(f"wrote the handoff for the server host to {path} (old agent {handoff.old_agent}, "
                           f"new agent {handoff.new_agent})")
        return self.finish("guide_step_4", changes)

    def handoff(self) -> Handoff:
        old, new = self.old_agent_id(), attestor.expected_agent_id(self.t)
        if not old or not new:
            raise MigrationError("cannot tell this node's old and new agent IDs", expected="both known",
                                 found=f"old {redact(str(old))}, new {new}", remedy="run agent-prepare from step 1")
        pem = Path(self.t.attestor.devid_cert).read_text() if self.t.attestor.profile == "tpm_devid" else ""
        return Handoff(self.t.node, redact(old), new, self.t.attestor.profile, self.t.trust_domain, pem)

    def agent_switch(self) -> StepResult:
        """Steps 5 to 7, the node's half: the Phase 3 agent stopped by pid, its cached SVID
        dropped (backed up), the agent started without a join token, its new ID proven; on a
        failure the node's Phase 3 is put back (the server never stopped)."""
        if self.plan:
            return self.finish("guide_step_7", [f"restart spire-agent without a join token as {self.new_agent_id()}"])
        return restore.or_phase3_back("guide_step_7", self._switch, self.t, self.journal, self.old_agent_id,
                                      self.log, sides=("agent",))

    def _switch(self) -> StepResult:
        changes = []
        want = attestor.expected_agent_id(self.t)
        if (agent := self._agent_to_switch()) is not None:
            startcheck.check_before_stop(self.t, None, load_config(self.t.agent.config), None)
            services.stop_agent(self.t)
            changes.append(f"stopped the Phase 3 spire-agent pid {agent.pid}")
        if services.agent_proc(self.t) is None:
            changes += self._start_tpm_agent(identify=services.node_agent_identity)
        ident = services.node_agent_identity(self.t)
        log = services.log_text(self.t, "agent")   # agent.log, or the unit's journal
        problems = []
        if want and ident != want:
            problems.append(f"agent ID {redact(str(ident))} is not {want}")
        if changes and ("Node attestation was successful" not in log or str(ident) not in log):
            problems.append("the agent log does not show a successful node attestation for this ID")
        if problems:
            raise MigrationError("TPM attestation is not active on this node", expected=f"agent {want}",
                                 found="; ".join(problems), remedy="`spire-migration diagnose` names the cause")
        self.journal.set_fact("new_agent_id", ident)
        restore.drop_old_agent_key(self.t)
        return self.finish("guide_step_7", changes, [f"TPM ATTESTATION IS ACTIVE: {ident}"])


# -- the registration, on the server host for one node ----------------------------------
def check_new_agent(t: Target, h: Handoff) -> None:
    """The handoff's new agent ID is the one the node's DevID certificate gives, under the server's
    DevID CA (``t`` is the server host's target); a ConfigError otherwise."""
    if h.profile != "tpm_devid":
        return
    try:
        cert = x509.load_pem_x509_certificate(h.devid_cert.encode())
    except ValueError as exc:
        raise ConfigError("the handoff's DevID certificate is not a PEM certificate", expected="PEM",
                          found=str(exc)) from exc
    derived = tpm.devid_agent_id_of(cert, t.trust_domain)
    cas = x509.load_pem_x509_certificates(Path(t.attestor.devid_ca).read_bytes())
    if derived != h.new_agent or not tpm.issued_by_any(cert, cas):
        raise ConfigError(f"the handoff of {h.node} names an agent ID its DevID certificate does not give",
                          expected=f"{h.new_agent} = the sha1 of a DevID certificate issued by {t.attestor.devid_ca}",
                          found=f"{derived}, issued by {cert.issuer.rfc4514_string()}",
                          remedy="run agent-prepare on that node again; never edit a handoff by hand")


class Registration(JournaledRun):
    """Make and break for one node, on the server host, from that node's handoff."""

    STEPS = ("make", "break_")

    def __init__(self, target: Target, journal: Journal, handoff: Handoff, plan: bool = False,
                 log=lambda s: None) -> None:
        super().__init__(target, journal, plan, log)
        self.handoff = handoff

    def old_agent(self) -> str | None:
        """The join_token agent the handoff names (by its redacted ID); None once evicted."""
        matches = [id_str(a["id"]) for a in self.server_agents() if is_join_token_agent(id_str(a["id"]))
                   and redact(id_str(a["id"])) == self.handoff.old_agent]
        if len(matches) > 1:
            raise SpireError(f"{len(matches)} join_token agents have the redacted ID {self.handoff.old_agent}",
                             expected="exactly one", found=str(len(matches)),
                             remedy="evict the stale one (`spire-server agent list`), then run again")
        return matches[0] if matches else None

    def server_agents(self) -> list[dict[str, Any]]:
        return services.server_cli(self.t).agents()

    def _server_has_tpm_attestor(self) -> None:
        if attestor.plugin_name(self.t) not in load_config(self.t.server.config).plugins("NodeAttestor"):
            raise MigrationError("the server has no TPM node attestor yet", expected=f"NodeAttestor "
                                 f"\"{attestor.plugin_name(self.t)}\" in {self.t.server.config}",
                                 found="join_token only", remedy="run the server part first")

    def make(self) -> StepResult:
        """Step 8, make: every entry of the old agent (and every node alias selecting it) copied
        for the new agent ID, before the node's agent switches; nothing is deleted."""
        check_new_agent(self.t, self.handoff)
        self._server_has_tpm_attestor()
        h, server = self.handoff, services.server_cli(self.t)
        old = self.old_agent()
        if old is None:
            if self.journal.done("guide_step_8_make") or server.agent(h.new_agent) is not None:
                return self.finish("guide_step_8_make", [], [f"the old agent of {h.node} is gone: made before"])
            raise SpireError(f"the server knows no join_token agent {h.old_agent}", expected=f"the old agent of {h.node}",
                             found="none", remedy="check the node's handoff is current (agent-prepare)")
        plan = reparent_plan(server, old, h.new_agent, self.t.server_id)
        changes = plan.lines()[:len(plan.create)] if self.plan else apply_make(server, plan)
        reload_s = cache_reload_s(load_config(self.t.server.config).section("server"))
        if changes and not self.plan:
            wait_until_served(time.monotonic(), reload_s)
        return self.finish("guide_step_8_make", changes,
                           [f"{len(plan.delete)} entries of {redact(old)} are served to {h.new_agent} as well, "
                            f"from the server's next entry cache reload (every {reload_s:g} s)"])

    def break_(self) -> StepResult:
        """Step 7 (the server's half) and step 8, break: the server lists the new agent TPM-attested;
        then the old agent's entries and aliases deleted by ID and the old agent evicted."""
        h, server = self.handoff, services.server_cli(self.t)
        record = server.agent(h.new_agent)
        sels = selector_strs(record or {})
        if record is None or record.get("attestation_type") != h.profile or \
                not any(s.startswith(f"{h.profile}:") for s in sels):
            raise MigrationError(f"the server does not list {h.node}'s new agent as TPM-attested: nothing is deleted",
                                 expected=f"{h.new_agent} attested by {h.profile} with {h.profile} selectors",
                                 found=f"{record.get('attestation_type') if record else 'not listed'}; {sels}",
                                 remedy="run agent-switch on the node first")
        old = self.old_agent()
        changes: list[str] = []
        if old is not None:
            plan = reparent_plan(server, old, h.new_agent, self.t.server_id)
            if self.plan:
                changes += plan.lines()
                changes.append(f"evict {redact(old)}")
            else:
                changes += apply_break(server, plan)
                server.evict(old)
                changes.append(f"evicted the retired join_token agent {redact(old)}")
        return self.finish("guide_step_8_break", changes, [f"{h.node}: {h.new_agent} attested by {h.profile}", *sels])
