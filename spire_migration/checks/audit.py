"""Beyond the guide: what an auditor asks of a migrated node (read-only checks).

* the join_token attestor is gone from the server once no join_token agent remains
  (a warning while some remain or until the migration is declared complete, a failure
  once it is: finalize (``pytest -m after_migration``) recorded and join_token configured again);
* no join token left in the agent's config, flags or files;
* the agent's ``KeyManager "disk"`` (a "memory" key manager loses the agent's key);
* the journal and backups readable by root only;
* the DevID certificate chains to the configured DevID CA and is not expiring;
* the EK certificate chains to the endorsement CA;
* the trust bundle / server CA is not expiring.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from spire_migration.node import services
from spire_migration.node import tpm
from spire_migration.errors import ConfigError
from spire_migration.node.view import HostView
from spire_migration.node.facade import Node
from spire_migration.node.spire import id_str
from spire_migration.verdict import CheckResult, check, failed, guarded

AFTER_MIGRATION_1 = "guide After Migration 1: Remove Join Token Attestor: once all agents migrated, remove it from the configuration"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def fingerprint(cert: x509.Certificate, algo: str = "sha256") -> str:
    return hashlib.new(algo, cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def chain_to(leaf: x509.Certificate, intermediates: list[x509.Certificate],
             roots: list[x509.Certificate], max_depth: int = 5) -> list[x509.Certificate] | None:
    """The chain leaf -> ... -> a cert in ``roots`` (signatures verified), or None."""
    chain = [leaf]
    current = leaf
    for _ in range(max_depth):
        root = next((r for r in roots if _issued_by(current, r)), None)
        if root is not None:
            return chain + ([root] if root is not current else [])
        nxt = next((c for c in intermediates if c not in chain and _issued_by(current, c)), None)
        if nxt is None:
            return None
        chain.append(nxt)
        current = nxt
    return None


def go_duration_s(text: str | None) -> float | None:
    """``168h`` / ``1h30m`` / ``90s`` -> seconds (Go time.ParseDuration units h, m, s).

    >>> go_duration_s("168h"), go_duration_s("1h30m"), go_duration_s("")
    (604800.0, 5400.0, None)
    """
    if not text:
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", str(text))
    if not parts:
        return None
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return float(sum(float(n) * unit[u] for n, u in parts))


def _agent_config(node: Node, title: str):
    """The node's agent.conf, or the failed result naming why it cannot be read."""
    try:
        return node.agent_config()
    except ConfigError as exc:
        res = failed(title, exc)
        res.evidence["host"] = node.view.name
        return res


# -- join_token attestor retired ---------------------------------------------------------
@guarded
def join_token_attestor_retired(node: Node) -> CheckResult:
    """The join_token attestor is gone from the server once no join_token agent remains."""
    journal = node.journal
    attestors = sorted(node.server_config().plugins("NodeAttestor"))
    jt_agents = [id_str(a["id"]) for a in node.agents if a.get("attestation_type") == "join_token"]
    complete = bool(journal and journal.done("after_migration_finalize"))
    configured = "join_token" in attestors
    title = "join_token attestor retired from the server"
    evidence = dict(node_attestors=attestors, join_token_agents=len(jt_agents),
                    migration_complete=complete)
    expected = "no NodeAttestor \"join_token\" on the server once no join_token agent remains"
    if not configured:
        return check(title, True, expected, f"server NodeAttestors {attestors}", **evidence)
    if jt_agents:
        res = check(title, True, expected,
                    f"join_token still configured; {len(jt_agents)} join_token agent(s) remain (gradual migration)",
                    **evidence)
        res.warnings = [f"{len(jt_agents)} agent(s) still attested by join_token: migrate them, then remove "
                        f"the join_token attestor ({AFTER_MIGRATION_1})"]
        return res
    remedy = (f"remove NodeAttestor \"join_token\" from {node.target.server.config} and restart the server "
              f"— {AFTER_MIGRATION_1}")
    if complete:
        return check(title, False, expected,
                     "no join_token agent remains, the migration was declared complete (finalize ran), "
                     f"and the server still configures NodeAttestor \"join_token\" ({node.target.server.config})",
                     remedy=remedy, **evidence)
    res = check(title, True, expected, "no join_token agent remains; the migration is not declared complete "
                "yet (finalize has not run); join_token still configured", **evidence)
    res.warnings = [f"join_token is configured though no agent uses it: run `pytest -m after_migration` "
                    f"(finalize), or {remedy}"]
    return res


# -- no join token left ----------------------------------------------------------------
def no_join_token_left(node: Node) -> CheckResult:
    """No join token left in the agent's config, command line or files."""
    title = "no join token left in agent config, flags or files"
    view, target = node.view, node.target
    problems = []
    cfg = _agent_config(node, title)
    if isinstance(cfg, CheckResult):
        return cfg
    files = []
    section = cfg.section("agent")
    for key in ("join_token", "join_token_file"):
        if key in section:
            problems.append(f"{target.agent.config} sets agent.{key}")
    if "join_token_file" in section:
        files.append(str(section["join_token_file"]))
    if "join_token" in cfg.plugins("NodeAttestor"):
        problems.append(f"{target.agent.config} still has NodeAttestor \"join_token\"")
    proc = node.agent_proc()
    if proc and (flag := services.join_token_flag(proc.argv)):
        problems.append(f"spire-agent pid {proc.pid} runs with {flag}")
    if target.agent.join_token_file:
        files.append(str(target.agent.join_token_file))
    for path in files:
        if view.stat(path) is not None:
            problems.append(f"join token file {path} still exists")
    ok = not problems
    return check(title, ok, "no join_token or join_token_file setting, no joinToken command-line flag, no token file",
                 "; ".join(problems) if problems else "none found", host=view.name,
                 remedy="remove NodeAttestor \"join_token\" and join_token settings from the agent config, "
                        "delete the token file, restart the agent without -joinToken (a TPM agent needs none)",
                 pid=proc.pid if proc else None, checked_files=files)


# -- KeyManager disk ---------------------------------------------------------------------
def agent_keymanager_disk(node: Node) -> CheckResult:
    """The agent's KeyManager is "disk" (it keeps its key across restarts)."""
    title = "agent KeyManager \"disk\""
    view, target = node.view, node.target
    cfg = _agent_config(node, title)
    if isinstance(cfg, CheckResult):
        return cfg
    kms = sorted(cfg.plugins("KeyManager"))
    ok = kms == ["disk"]
    return check(title, ok, "KeyManager \"disk\"", f"KeyManager {kms}",
                 remedy=f"use KeyManager \"disk\" {{ plugin_data {{ directory = \"{target.agent.data_dir}\" }} }} "
                        f"in {target.agent.config}: with \"memory\" a restarted agent loses its key",
                 host=view.name, key_managers=kms)


# -- journal root only ---------------------------------------------------------------------
def journal_root_only(node: Node) -> CheckResult:
    """The journal and its backups are readable by root only."""
    title = "backups and journal readable by root only"
    view, root = node.view, node.target.journal_root
    items = view.walk(root)
    if not items:
        res = check(title, True, f"{root} and everything under it owned by root, no group/other bits",
                    f"no journal at {root} on {view.name} (nothing migrated yet)", host=view.name)
        res.warnings = [f"no journal at {root}: nothing to protect yet"]
        return res
    bad = [f"{s.path} {s.user} {s.mode_str}" for s in items
           if s.kind != "symlink" and (s.uid != 0 or s.mode & 0o077)]
    ok = not bad
    return check(title, ok, f"{root} and everything under it owned by root, no group/other bits",
                 f"{len(items)} paths checked" + (f"; not root-only: {bad[:8]}" if bad else ", all root-only"),
                 remedy=f"chown -R root:root {root} && chmod -R go-rwx {root}", host=view.name,
                 paths=len(items), offending=bad[:20])


# -- DevID certificate ---------------------------------------------------------------------
def devid_cert_valid(node: Node, ca_view: HostView | None = None) -> CheckResult:
    """The DevID certificate chains to the configured DevID CA and is not expiring soon.

    The DevID CA bundle is the server's: read where the server runs unless ``ca_view`` says otherwise.
    """
    title = "DevID certificate chains to the DevID CA and is not expiring"
    view, target, ca_view = node.view, node.target, ca_view or node.server_view
    a = target.attestor
    days = target.thresholds.cert_expiry_days
    if a.profile != "tpm_devid":
        return check(title, True, "a tpm_devid profile", f"profile {a.profile}: no DevID certificate is used",
                     host=view.name)
    raw = view.read_bytes(a.devid_cert)
    ca_raw = ca_view.read_bytes(a.devid_ca)
    if raw is None or ca_raw is None:
        missing = a.devid_cert if raw is None else a.devid_ca
        return check(title, False, "the DevID certificate and the DevID CA bundle", f"{missing} unreadable",
                     remedy="provision the DevID (TPM vendor / installer) or fix attestor paths", host=view.name)
    certs = x509.load_pem_x509_certificates(raw)
    roots = x509.load_pem_x509_certificates(ca_raw)
    leaf = certs[0]
    chain = chain_to(leaf, certs[1:], roots)
    left = leaf.not_valid_after_utc - _now()
    problems = []
    if chain is None:
        problems.append(f"{a.devid_cert} (issuer {leaf.issuer.rfc4514_string()}) does not chain to {a.devid_ca}")
    if left < timedelta(days=days):
        problems.append(f"expires {leaf.not_valid_after_utc.isoformat()} ({left.days} days left, threshold {days})")
    ok = not problems
    return check(title, ok, f"signature chain to {a.devid_ca}, more than {days} days left",
                 "; ".join(problems) if problems else
                 f"{leaf.subject.rfc4514_string()} chains to {chain[-1].subject.rfc4514_string()}, "
                 f"{left.days} days left",
                 remedy="re-provision the DevID certificate from the CA the server trusts (devid_ca_path), "
                        "then restart the agent; the agent ID changes with the certificate: re-parent entries",
                 host=view.name, devid_sha1=fingerprint(leaf, "sha1"), devid_sha256=fingerprint(leaf),
                 subject=leaf.subject.rfc4514_string(), not_after=leaf.not_valid_after_utc.isoformat(),
                 days_left=left.days)


# -- EK certificate ------------------------------------------------------------------------
@guarded
def ek_cert_valid(node: Node) -> CheckResult:
    """The EK certificate in the TPM chains to the endorsement CA (and is in date)."""
    target = node.target
    days = target.thresholds.cert_expiry_days
    info = tpm.probe(target.tpm)
    title = "EK certificate chains to the endorsement CA"
    if info.ek_cert_der is None:
        return check(title, False, "an RSA EK certificate in NV 0x01c00002", "none",
                     remedy="provision the EK certificate (TPM vendor or swtpm_setup --create-ek-cert)")
    ek = x509.load_der_x509_certificate(info.ek_cert_der)
    chains = tpm.ek_cert_chains_to(info.ek_cert_der, target.attestor.endorsement_ca)
    left = ek.not_valid_after_utc - _now()
    problems = []
    if not chains:
        problems.append(f"issuer {ek.issuer.rfc4514_string()} not found (signature) in {target.attestor.endorsement_ca}")
    if left.total_seconds() <= 0:
        problems.append(f"expired {ek.not_valid_after_utc.isoformat()}")
    warnings = [f"EK certificate expires in {left.days} days (threshold {days})"] if 0 < left.days < days else []
    res = check(title, not problems, f"the EK certificate's direct issuer in {target.attestor.endorsement_ca}, "
                "certificate in date", "; ".join(problems) if problems else
                f"issued by {ek.issuer.rfc4514_string()}, {left.days} days left",
                remedy="put the EK certificate's issuing CA (no intermediates) in endorsement_ca_path",
                ek_sha256=fingerprint(ek), ek_sha1=fingerprint(ek, "sha1"), issuer=ek.issuer.rfc4514_string(),
                not_after=ek.not_valid_after_utc.isoformat(), ek_matches_cert=info.ek_matches_cert)
    res.warnings = warnings
    return res


# -- trust bundle --------------------------------------------------------------------------
@guarded
def trust_bundle_valid(node: Node) -> CheckResult:
    """The trust bundle and the server CA are not expiring."""
    days = node.target.thresholds.cert_expiry_days
    certs = x509.load_pem_x509_certificates(node.server.bundle_pem().encode())
    server = node.server_config()
    ca_ttl = go_duration_s(server.section("server").get("ca_ttl"))
    upstream = bool(server.plugins("UpstreamAuthority"))
    threshold = timedelta(days=days)
    basis = f"thresholds.cert_expiry_days = {days}"
    if not upstream and ca_ttl and timedelta(seconds=ca_ttl / 2) < threshold:
        threshold = timedelta(seconds=ca_ttl / 2)
        basis = (f"half the server's ca_ttl ({ca_ttl / 3600:g} h): SPIRE self-signs and rotates its CA at half "
                 f"life, so a bundle CA shorter-lived than {days} days is normal")
    newest = max(certs, key=lambda c: c.not_valid_after_utc)
    left = newest.not_valid_after_utc - _now()
    ok = left > threshold
    return check("trust bundle and server CA not expiring", ok,
                 f"the newest bundle CA valid for more than {threshold} ({basis})",
                 f"{len(certs)} CA(s); newest expires {newest.not_valid_after_utc.isoformat()} ({left} left)",
                 remedy="check the server's CA rotation (server log: 'X509 CA prepared/activated') and its "
                        "UpstreamAuthority; agents fail once the bundle expires",
                 bundle=[{"subject": c.subject.rfc4514_string(), "sha256": fingerprint(c),
                          "not_after": c.not_valid_after_utc.isoformat()} for c in certs],
                 ca_ttl_s=ca_ttl, upstream_authority=upstream)
