"""The guide's Post-Migration Validation Checklist, as read-only checks.

One function per checklist item (``post_check_1`` ... ``post_check_10``), each
returning a :class:`~spire_migration.verdict.CheckResult`. They cover the
guide's validation commands through APIs, never by scraping text:

=========================================  ==========================================
guide command                              here
=========================================  ==========================================
``pgrep -a spire``                          :func:`server_with_tpm_attestor`, :func:`agent_with_tpm_attestor_only` (pid file + /proc)
``verify_tpm.sh``                           :func:`tpm_attestation_verified`
``spire-server agent list``                 :func:`agent_id_is_tpm` (``-output json``)
``spire-server entry show``                 :func:`workloads_under_right_parent` (``-output json``)
``kubectl get pods -l app=mtls-demo``       :func:`workloads_fetch_svids` (runtime.instances())
``kubectl logs <pod>``                      :func:`workload_logs_success` (runtime.logs())
``tail -50 server.log / agent.log``         :func:`no_errors_in_logs` (logfmt parsed)
``tpm2_pcrread sha256``                     hardening.pcr_usage_documented (tpm2-pytss)
``time spire-agent api fetch``              :func:`performance` (the workload's ``check`` mode)
=========================================  ==========================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from spire_migration.config import attestor
from spire_migration.node import logs
from spire_migration.node import services
from spire_migration.node import tpm
from spire_migration.checks.premigration import workload_entry_under_agent
from spire_migration.errors import MigrationError
from spire_migration.config.hclconfig import SpireConfig
from spire_migration.node.facade import Node
from spire_migration.node.process import ProcInfo
from spire_migration.redact import redact
from spire_migration.node.spiffe_ids import is_join_token_agent
from spire_migration.node.spire import id_str, selector_strs
from spire_migration.verdict import CheckResult, check, guarded

GUIDE_ISSUE_1 = ("guide Issue 1: verify the TPM device path in agent.conf, check the TPM device is accessible; "
                 "`pytest -m diagnose` names the cause")


# -- shared readings --------------------------------------------------------------
def workload_check(node: Node) -> dict[str, Any]:
    """Run the workload's ``check`` mode once: {spiffe_id, fetch_ms, verified, peer_id, error}."""
    try:
        return node.runtime.check(node.target.thresholds.start_timeout_s / 4)
    except MigrationError as exc:
        return {"verified": False, "error": exc.message, "found": exc.found, "spiffe_id": None,
                "fetch_ms": None}


def likely_cause(node: Node) -> str:
    """The first broken prerequisite of a workload fetch, named with its check."""
    try:
        if node.agent_proc() is None or not node.agent.healthy():
            return f"the SPIRE agent is not running (post_check_2): start it ({node.target.agent_bin} run -config {node.target.agent.config})"
        spiffe_id = node.target.workload.spiffe_id
        if not workload_entry_under_agent(node).ok:
            return (f"no registration entry for {spiffe_id} under this node's agent (post_check_4): "
                    "re-create it under the agent (guide Step 8)")
    except MigrationError as exc:
        return exc.message
    return "see the workload's log and the agent log"


def _since(journal_facts: dict[str, Any], *keys: str) -> datetime | None:
    for key in keys:
        when = logs.parse_time(journal_facts.get(key))
        if when is not None:
            return when
    return None


def _running_with_config(node: Node, component: str) -> tuple[ProcInfo | None, bool, SpireConfig, list[str]]:
    """The server's or the agent's process, whether it answers healthcheck, its config and NodeAttestors."""
    if component == "server":
        info, cli, cfg = node.server_proc(), node.server, node.server_config()
    else:
        info, cli, cfg = node.agent_proc(), node.agent, node.agent_config()
    return info, info is not None and cli.healthy(), cfg, sorted(cfg.plugins("NodeAttestor"))


# -- post_check_1 -------------------------------------------------------------------
@guarded
def server_with_tpm_attestor(node: Node) -> CheckResult:
    """SPIRE server running with the TPM node attestor."""
    t, name = node.target, attestor.plugin_name(node.target)
    info, healthy, cfg, attestors = _running_with_config(node, "server")
    stale = info is not None and services.started_before(info, t.server.config)
    ok = healthy and name in attestors and not stale
    found = (f"no spire-server process (pid file {t.server.pid_file})" if info is None else
             f"pid {info.pid} {'healthy' if healthy else 'NOT healthy'}, NodeAttestors {attestors}"
             + (", started before its config was last written (runs an older config)" if stale else ""))
    return check("SPIRE server running with the TPM node attestor", ok,
                 f"a healthy spire-server running {t.server.config} with NodeAttestor \"{name}\"", found,
                 remedy=(f"start the server: {t.server_bin} run -config {t.server.config} (guide Step 6)"
                         if info is None else
                         f"restart the server so it reads {t.server.config} (guide Step 6)" if stale else
                         f"add NodeAttestor \"{name}\" to {t.server.config} (guide Step 4)"),
                 pid=info.pid if info else None, node_attestors=attestors, healthy=healthy)


# -- post_check_2 -------------------------------------------------------------------
@guarded
def agent_with_tpm_attestor_only(node: Node) -> CheckResult:
    """SPIRE agent running with the TPM node attestor, and only it."""
    t, name = node.target, attestor.plugin_name(node.target)
    info, healthy, cfg, attestors = _running_with_config(node, "agent")
    section = cfg.section("agent")
    token_keys = [k for k in ("join_token", "join_token_file") if k in section]
    flag = info is not None and services.join_token_flag(info.argv) is not None
    problems = []
    if info is None:
        problems.append(f"no spire-agent process (pid file {t.agent.pid_file})")
    elif not healthy:
        problems.append(f"spire-agent pid {info.pid} does not answer healthcheck on {t.agent.socket}")
    if attestors != [name]:
        problems.append(f"agent.conf NodeAttestors {attestors}")
    if token_keys:
        problems.append(f"agent.conf sets {token_keys}")
    if flag:
        problems.append("the agent runs with -joinToken")
    ok = not problems
    if info is None:
        remedy = (f"start the agent without a join token: {t.agent_bin} run -config {t.agent.config} "
                  "(guide Step 6); read " + str(t.agent.log))
    elif attestors != [name] or token_keys:
        remedy = (f"keep exactly one NodeAttestor, \"{name}\", in {t.agent.config}: remove NodeAttestor "
                  "\"join_token\" (SPIRE agents refuse two) and any join_token setting, then restart the agent")
    elif flag:
        remedy = "restart the agent without -joinToken: with a join token it attests by join_token"
    else:
        remedy = f"read {t.agent.log}"
    return check("SPIRE agent running with the TPM node attestor only", ok,
                 f"a healthy spire-agent, agent.conf with exactly NodeAttestor [\"{name}\"], no join token",
                 "; ".join(problems) if problems else f"pid {info.pid} healthy, NodeAttestors {attestors}, no join token",
                 remedy=remedy, pid=info.pid if info else None, node_attestors=attestors,
                 argv=redact(" ".join(info.argv)) if info else None)


# -- post_check_3 -------------------------------------------------------------------
@guarded
def agent_id_is_tpm(node: Node) -> CheckResult:
    """The agent ID contains the TPM attestor path, and the server lists it so."""
    t = node.target
    prefix = t.agent_id_prefix(t.attestor.profile)
    ident = node.agent_id()
    record = node.agent_record(ident) if ident else None
    want = attestor.expected_agent_id(t)
    ok = bool(ident and ident.startswith(prefix) and record
              and record.get("attestation_type") == t.attestor.profile and (want is None or ident == want))
    devid_sha1 = tpm.cert_sha1(t.attestor.devid_cert) if t.attestor.profile == "tpm_devid" else None
    found = ("the agent holds no SVID" if not ident else
             f"agent ID {redact(ident)}; " + (f"server lists attestation_type {record.get('attestation_type')!r}"
                                              if record else "not in the server's agent list"))
    return check("agent ID contains the TPM attestor path", ok,
                 f"agent ID {want or prefix + '<hash>'}, attestation_type {t.attestor.profile}", found,
                 remedy=GUIDE_ISSUE_1, agent_id=redact(ident or ""), expected_agent_id=want,
                 devid_sha1=devid_sha1, attestation_type=(record or {}).get("attestation_type"),
                 agent_count=len(node.agents))


# -- post_check_4 -------------------------------------------------------------------
@guarded
def workloads_under_right_parent(node: Node) -> CheckResult:
    """Workloads are registered with the TPM agent (or its node alias) as parent."""
    base = workload_entry_under_agent(node)
    listed = {id_str(a["id"]) for a in node.agents}
    orphans = [redact(id_str(e["spiffe_id"])) + " under " + redact(id_str(e["parent_id"]))
               for e in node.entries
               if is_join_token_agent(id_str(e["parent_id"])) and id_str(e["parent_id"]) not in listed]
    ok = base.ok and not orphans
    found = base.found
    if not base.ok:
        ident = node.agent_id() or "<no agent ID>"
        others = base.evidence.get("parents") or []
        found = (f"no entry for {node.target.workload.spiffe_id} with this node's agent {ident} (or a node alias of "
                 f"it) as parent and the expected selectors; entries for it under other parents: {others or 'none'}")
    found += f"; entries under retired join_token agents: {orphans}" if orphans else ""
    remedy = (f"register the workload under the agent (guide Step 8): spire-server entry create -parentID "
              f"{node.agent_id() or '<TPM agent ID>'} -spiffeID {node.target.workload.spiffe_id} "
              + " ".join(f"-selector {s}" for s in node.target.workload.selectors)
              + ("; re-parent or delete the entries under retired agents" if orphans else ""))
    return CheckResult("workloads registered with the TPM agent as parent", ok, base.expected, redact(found),
                       {**base.evidence, "entry_count": len(node.entries), "orphaned": orphans}, remedy)


# -- post_check_5 -------------------------------------------------------------------
@guarded
def workloads_fetch_svids(node: Node, fetch: dict[str, Any]) -> CheckResult:
    """The workload's instances run and fetch their SVID."""
    t = node.target
    instances = node.runtime.instances()
    running = [i for i in instances if i.state.lower() == "running"]
    phase4 = [i for i in running if i.phase == 4]
    got = fetch.get("spiffe_id")
    ok = bool(phase4) and len(running) == len(instances) and got == t.workload.spiffe_id
    problems = []
    if not phase4:
        problems.append(f"no running Phase 4 instance ({[(i.name, i.state, i.phase) for i in instances]})")
    elif len(running) != len(instances):
        problems.append(f"not all instances run: {[(i.name, i.state) for i in instances]}")
    if got != t.workload.spiffe_id:
        problems.append(f"fetch gave {got!r}: {fetch.get('error') or fetch.get('found') or 'no SVID'}")
    return check("workloads run and fetch their SVIDs", ok,
                 f"every instance running (phase 4) and an X.509 SVID {t.workload.spiffe_id} fetched now",
                 "; ".join(problems) if problems else f"{len(running)} instance(s) running, fetched {got}",
                 remedy=f"cause: {likely_cause(node)}" if not ok else "",
                 instances=[f"{i.name}:{i.state}:phase{i.phase}" for i in instances], spiffe_id=got,
                 fetch_ms=fetch.get("fetch_ms"))


# -- post_check_6 -------------------------------------------------------------------
@guarded
def mtls_works(node: Node, fetch: dict[str, Any]) -> CheckResult:
    """mTLS between the workload's client and server works, both sides authorized by SPIFFE ID."""
    peer = node.target.workload.peer_id or node.target.workload.spiffe_id
    ok = bool(fetch.get("verified")) and fetch.get("peer_id") == peer
    found = (f"verified, peer {fetch.get('peer_id')}" if ok else
             f"not verified: {fetch.get('error') or fetch.get('found') or 'no answer'}; peer {fetch.get('peer_id')!r}")
    return check("mTLS communication works", ok, f"an mTLS exchange verified, peer {peer}", found,
                 remedy=f"cause: {likely_cause(node)}" if not ok else "",
                 peer_id=fetch.get("peer_id"), verified=fetch.get("verified"))


# -- post_check_7 -------------------------------------------------------------------
@guarded
def tpm_attestation_verified(node: Node) -> CheckResult:
    """TPM attestation verified: the checks of the guide's verify_tpm.sh."""
    t = node.target
    profile = t.attestor.profile
    want = attestor.expected_agent_id(t)
    ident = node.agent_id() or ""
    record = node.agent_record(ident) or {}
    sels = selector_strs(record)
    log_ok = False
    for rec in logs.records(node.log_lines("agent")):
        if rec.get("msg") == "Node attestation was successful" and rec.get("spiffe_id") == ident:
            log_ok = True
    problems = []
    if want and ident != want:
        problems.append(f"agent ID {redact(ident) or 'none'} is not {want}")
    if record.get("attestation_type") != profile:
        problems.append(f"server lists attestation type {record.get('attestation_type')!r}")
    if not any(s.startswith(f"{profile}:") for s in sels):
        problems.append(f"no {profile} selectors on the agent (found {sels})")
    if not log_ok:
        problems.append(f"{services.log_source(t, 'agent')} shows no 'Node attestation was successful' for this agent ID")
    ok = not problems
    return check("TPM attestation verified (verify_tpm.sh)", ok,
                 f"agent {want or profile}, attestation_type {profile}, {profile}: selectors, "
                 "attestation logged by the agent",
                 "; ".join(problems) if problems else f"TPM ATTESTATION IS ACTIVE: {ident}",
                 remedy=GUIDE_ISSUE_1, agent_id=redact(ident), selectors=sels,
                 devid_sha1=tpm.cert_sha1(t.attestor.devid_cert) if profile == "tpm_devid" else None)


# -- post_check_8 -------------------------------------------------------------------
@guarded
def no_errors_in_logs(node: Node, facts: dict[str, Any], reviewed_until: datetime | None = None) -> CheckResult:
    """No error in the SPIRE server and agent logs since the migration."""
    t = node.target
    since = _since(facts, "migrated_at", "deployed_at")
    basis = "the migration (journal migrated_at)" if facts.get("migrated_at") else \
        "the deploy (journal deployed_at)" if facts.get("deployed_at") else "the start of the logs (no journal)"
    finalized = _since(facts, "finalized_at")  # finalize restarts the server: agents log transient errors
    if finalized and since and finalized > since:
        since, basis = finalized, "the server restart of finalize (journal finalized_at)"
    if reviewed_until and (since is None or reviewed_until > since):
        since, basis = reviewed_until, f"the review point {reviewed_until.isoformat()} (--logs-since)"
    found_errors: dict[str, list[str]] = {}
    counts = {}
    for name, path in (("server", services.log_source(t, "server")), ("agent", services.log_source(t, "agent"))):
        errs = logs.errors_since(node.log_lines(name), since)
        counts[name] = len(errs)
        if errs:
            found_errors[str(path)] = [logs.summarize(r) for r in errs[-10:]]
    ok = not found_errors
    found = ("no error" if ok else
             "; ".join(f"{n} error(s) in {p}, last: {lines[-1]}" for p, lines, n in
                       ((p, lines, counts["server" if p == services.log_source(t, "server") else "agent"])
                        for p, lines in found_errors.items())))
    return check("no errors in the SPIRE logs since the migration", ok,
                 f"no level=error/fatal/panic line since {basis}", found,
                 remedy="read each listed error (the guide's Common Migration Issues); once reviewed, "
                        "pass --logs-since <time> to audit from that point",
                 since=since.isoformat() if since else None, error_counts=counts, errors=found_errors)


# -- post_check_9 -------------------------------------------------------------------
@guarded
def workload_logs_success(node: Node, facts: dict[str, Any]) -> CheckResult:
    """The workload's logs show successful operation since it was deployed."""
    since = _since(facts, "deployed_at", "migrated_at")
    rt = node.runtime
    instances = [i for i in rt.instances() if i.state.lower() == "running"]
    texts = {i.name: rt.logs(i, since) for i in instances}
    fetched = [n for n, s in texts.items() if "Successfully fetched SVIDs" in s]
    verified = [n for n, s in texts.items() if "VERIFIED" in s]
    last_outcome = {}
    for n, s in texts.items():
        outcomes = [line for line in s.splitlines() if " VERIFIED " in line or " FAILED " in line
                    or " REJECTED " in line]
        if outcomes:
            last_outcome[n] = outcomes[-1]
    failing = {n: line for n, line in last_outcome.items() if " VERIFIED " not in line}
    ok = bool(fetched) and bool(verified) and not failing
    found = (f"fetched in {fetched or 'none'}; VERIFIED in {verified or 'none'}"
             + (f"; last exchange failed in {sorted(failing)}: {list(failing.values())[0][:200]}" if failing else ""))
    return check("application logs show successful operation", ok,
                 "'Successfully fetched SVIDs' and 'VERIFIED' since the deploy, last exchange VERIFIED",
                 redact(found), remedy=f"cause: {likely_cause(node)}" if not ok else "",
                 since=since.isoformat() if since else None, instances=sorted(texts),
                 last_lines=[redact(line[:200]) for line in last_outcome.values()])


# -- post_check_10 ------------------------------------------------------------------
@guarded
def performance(node: Node, fetch: dict[str, Any]) -> CheckResult:
    """SVID fetch latency is under the target's threshold."""
    limit = node.target.thresholds.svid_fetch_ms
    ms = fetch.get("fetch_ms")
    ok = ms is not None and float(ms) <= limit
    found = (f"SVID fetch took {float(ms):.1f} ms" if ms is not None else
             f"no SVID fetched: {fetch.get('error') or fetch.get('found') or 'no answer'}")
    remedy = ("guide Issue 4: use /dev/tpmrm0 for better concurrency, cache SVIDs in the application, "
              "check agent CPU; or raise thresholds.svid_fetch_ms if the limit is too tight"
              if ms is not None else f"cause: {likely_cause(node)}")
    return check("performance acceptable (SVID fetch latency)", ok, f"fetch_ms <= {limit:g} (thresholds.svid_fetch_ms)",
                 found, remedy=remedy, fetch_ms=ms, threshold_ms=limit)
