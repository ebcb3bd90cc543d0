"""The guide's Security Hardening list, as read-only checks (any phase).

``hardening_1`` ... ``hardening_5``, each taking a :class:`~spire_migration.node.facade.Node`.
Host facts (the TPM node's owner and mode, the agent config) are read through
the node's view so a fleet run audits each node where it is; PCR values are
read with tpm2-pytss, which only works where the suite runs (``node.view.is_local``).
"""

from __future__ import annotations

import re
from spire_migration.node import logs, services
from spire_migration.checks import pcrs
from spire_migration.node import tpm
from spire_migration.errors import MigrationError
from spire_migration.node.facade import Node
from spire_migration.verdict import CheckResult, check, failed

_RM = re.compile(r"^/dev/tpmrm\d+$")
_RAW = re.compile(r"^/dev/tpm\d+$")
GUIDE_H1 = "guide Security Hardening 1: Restrict TPM Access: limit TPM device permissions to SPIRE Agent only"
GUIDE_H2 = "guide Security Hardening 2: Use Resource Manager: prefer /dev/tpmrm0 over /dev/tpm0"
GUIDE_H3 = ("guide Security Hardening 3: Document PCR Usage: clearly document which PCRs are used and why "
            "(guide Issue 3: document expected PCR values and update after changes)")
GUIDE_H4 = "guide Security Hardening 4: Regular Audits: review TPM access logs and attestation records"
GUIDE_H5 = "guide Security Hardening 5: Update Procedures: document how to handle system updates that change PCRs"
PCR_SELECTOR_NEVER_MATCHES = (
    "SPIRE never matches tpm:pcr: selectors on workload entries (no node attestor emits them): such entries "
    "issue no SVID; bind workloads to TPM nodes with a node alias entry instead (README, deviations)")


# -- hardening_1 ----------------------------------------------------------------------
def tpm_access_restricted(node: Node) -> CheckResult:
    """TPM access restricted to the SPIRE agent's user (device node or socket owner and mode)."""
    title = "TPM access restricted to the SPIRE agent's user"
    view, target = node.view, node.target
    path, source = node.tpm_path()
    if not path:
        path = next((p for p in ("/dev/tpmrm0", "/dev/tpm0") if view.stat(p)), "/dev/tpmrm0")
    st = view.stat(path)
    user = target.agent.user
    if st is None:
        return check(title, False, f"the TPM at {path} ({source})", f"{path}: no such file on {view.name}",
                     remedy="fix tpm_device_path / tpm.device, or start the TPM (swtpm) / enable it in firmware",
                     host=view.name, path=path)
    access = view.users_with_access(st)
    allowed = {user, "root"}
    extra = [u for u in access if u not in allowed]
    ok = not extra
    fix = f"chmod 0600 {path}" + (f" && chown {user} {path}" if st.user != user else "")
    if st.kind == "character device":
        fix += " (make it permanent with a udev rule: KERNEL==\"tpmrm[0-9]*\", OWNER=\"" + user + "\", MODE=\"0600\")"
    found = (f"{path} is a {st.kind} {st.user}:{st.group} mode {st.mode_str}; readable/writable by {access}"
             + (f"; {', '.join(extra)} should not have access" if extra else ""))
    who = "root" if user == "root" else f"the agent user {user} (or root)"
    return check(title, ok, f"{path} accessible only by {who}: no world bits, group bits only for a "
                 "group with no other member", found,
                 remedy=f"{fix} — {GUIDE_H1}", host=view.name, path=path, source=source, owner=st.user,
                 group=st.group, mode=st.mode_str, users_with_access=access)


# -- hardening_2 ----------------------------------------------------------------------
def resource_manager_preferred(node: Node) -> CheckResult:
    """The agent uses the TPM resource manager (/dev/tpmrm*) or a socket that serialises access."""
    title = "TPM resource manager preferred over /dev/tpm0"
    view, target = node.view, node.target
    path, source = node.tpm_path()
    warnings: list[str] = []
    if not path:
        found_rm = [p for p in ("/dev/tpmrm0",) if view.stat(p)]
        ok = bool(found_rm) or not view.stat("/dev/tpm0")
        warnings.append("tpm_device_path is not set: pin it to /dev/tpmrm0 so a second TPM device changes nothing")
        res = check(title, ok, "/dev/tpmrm* (or a serialising socket)",
                    f"auto-detection would pick {found_rm[0] if found_rm else '/dev/tpm0'}",
                    remedy=f"set tpm_device_path = \"/dev/tpmrm0\" in {target.agent.config} — {GUIDE_H2}",
                    host=view.name, source=source)
        res.warnings = warnings
        return res
    st = view.stat(path)
    kind = st.kind if st else "missing"
    if _RM.match(path):
        ok, found = True, f"{path} (kernel resource manager)"
    elif _RAW.match(path):
        ok, found = False, f"{path}: the raw TPM device (one user at a time, no session/object swapping)"
    elif kind == "unix socket":
        ok, found = True, (f"{path}: a unix socket (swtpm/simulator): it serves one connection at a time, "
                           "which serialises access; SPIRE opens one connection per command")
    else:
        ok, found = False, f"{path}: {kind}"
    return check(title, ok, "/dev/tpmrm* or a socket that serialises access", found,
                 remedy=f"set tpm_device_path = \"/dev/tpmrm0\" in {target.agent.config} and restart the agent "
                        f"— {GUIDE_H2} (and guide Issue 4: better concurrency)",
                 host=view.name, path=path, kind=kind, source=source)


# -- hardening_3 ----------------------------------------------------------------------
def pcr_usage_documented(node: Node) -> CheckResult:
    """Every PCR a registration depends on has its expected value recorded, and still has it."""
    title = "PCR usage documented (expected values recorded)"
    view, target, entries, journal = node.view, node.target, node.agent_entries(), node.journal
    uses = pcrs.pcr_uses(entries, target)
    bad = pcrs.unparsable_pcr_selectors(entries)
    if not uses and not bad:
        return check(title, True, "PCR-bound registrations, if any, with recorded expected values",
                     "no PCR-based registration and no attestor.pcr_bindings: nothing depends on PCR values",
                     host=view.name, pcr_uses=0)
    rec = pcrs.recorded(journal)
    current: dict[str, dict[int, str]] = {}
    warnings = []
    if any(u.entry_id for u in uses):
        warnings.append(PCR_SELECTOR_NEVER_MATCHES)
    if view.is_local:
        for bank in sorted({u.bank for u in uses}):
            try:
                current[bank] = tpm.pcr_read(target.tpm, bank, sorted({u.index for u in uses if u.bank == bank}))
            except MigrationError as exc:
                return failed(title, exc)
    else:
        warnings.append(f"current PCR values not read: tpm2-pytss reads the TPM only where the suite runs, "
                        f"not on {view.name}; run the suite on that node for this comparison")
    findings = pcrs.compare(uses, rec, current)
    if not view.is_local:  # compare recorded against embedded values only
        failing = [f for f in findings if f.recorded is None or any(v != f.recorded for v in f.embedded)]
    else:
        failing = [f for f in findings if not f.ok]
    ok = not failing and not bad
    found_parts = [f.describe() for f in (failing or findings)]
    if bad:
        found_parts.append(f"selectors naming a PCR without index and value: {bad}")
    if failing and any(f.recorded is None for f in failing):
        remedy = (f"record the expected values: python -m spire_migration.checks.pcrs record --target {target.source or 'T'}"
                  f" — {GUIDE_H3}")
    else:
        remedy = (f"a PCR changed since its value was recorded: find the update or boot change that did it; if it "
                  f"is expected, follow the update procedure ({pcrs.UPDATE_PROCEDURE}) — {GUIDE_H3}")
    res = check(title, ok, "for every PCR in use: a recorded value (journal fact pcr_expectations) equal to "
                "the current value and to the value the entry's selector embeds", "; ".join(found_parts),
                remedy=remedy, host=view.name,
                pcr_values={f"{f.bank}:{f.index}": {"recorded": f.recorded, "current": f.current}
                            for f in findings},
                pcr_uses=[u.source for u in uses])
    res.warnings = warnings
    return res


# -- hardening_4 ----------------------------------------------------------------------
def audits_possible(node: Node, outputs: dict[str, str | None]) -> CheckResult:
    """Audits are possible: attestation records, the journal, and this run's reports."""
    title = "audits possible (attestation records and reports)"
    view, target, journal = node.view, node.target, node.journal
    attested = []
    text = node.log_lines("server") if view.is_local else None
    server_log_ok = text is not None
    if text:
        attested = [r for r in logs.records(text) if r.get("msg") == "Agent attestation request completed"
                    or r.get("msg", "").startswith("Node attestation")]
    agent_records = [r for r in logs.records(node.log_lines("agent"))
                     if r.get("msg") == "Node attestation was successful"]
    history = len(journal.data.get("history", [])) if journal else 0
    requested = {k: v for k, v in outputs.items() if v}
    problems = []
    if not agent_records:
        problems.append(f"no attestation record in {services.log_source(target, 'agent')}")
    if view.is_local and not server_log_ok:
        problems.append(f"{services.log_source(target, 'server')} unreadable")
    warnings = []
    if not requested:
        warnings.append("no report file requested: pass --report FILE (and --junitxml / --cucumberjson) to keep one")
    if journal is None:
        warnings.append("no migration journal on this node yet: nothing migrated, nothing to audit there")
    ok = not problems
    found = ("; ".join(problems) if problems else
             f"{len(agent_records)} attestation record(s) in the agent log, {len(attested)} in the server log, "
             f"journal history {history} step(s), reports: {sorted(requested) or 'none requested'}")
    res = check(title, ok, "attestation records in the SPIRE logs, the journal readable, reports written",
                found, remedy=f"keep the SPIRE logs (log_file or journald) and run `pytest -m validate --report` "
                              f"on a schedule — {GUIDE_H4}",
                host=view.name, reports=requested, journal_steps=history,
                agent_attestations=len(agent_records), server_attestation_lines=len(attested))
    res.warnings = warnings
    return res


# -- hardening_5 ----------------------------------------------------------------------
def pcr_update_procedure(node: Node) -> CheckResult:
    """The procedure for PCR-changing updates is known: every entry that depends on PCR values is listed."""
    title = "procedure for PCR-changing updates known (dependent entries listed)"
    view, target, entries, journal = node.view, node.target, node.agent_entries(), node.journal
    uses = pcrs.pcr_uses(entries, target)
    bad = pcrs.unparsable_pcr_selectors(entries)
    dependent = sorted({f"{u.spiffe_id} (entry {u.entry_id}) depends on PCR {u.bank}:{u.index}"
                        for u in uses if u.entry_id})
    bindings = sorted({u.index for u in uses if not u.entry_id})
    ok = not bad
    if not uses:
        found = "no registration depends on PCR values: a PCR-changing update needs no registration change"
    else:
        found = (f"{len(dependent)} dependent entr{'y' if len(dependent) == 1 else 'ies'}: {dependent}"
                 + (f"; target pcr_bindings {bindings}" if bindings else ""))
    if bad:
        found += f"; cannot plan for selectors naming a PCR without index/value: {bad}"
    res = check(title, ok, "every entry depending on PCR values listed with its PCRs, and the procedure",
                found, remedy=f"rewrite those selectors as tpm:pcr:<index>:<hex value> — {GUIDE_H5}",
                host=view.name, dependent_entries=dependent, procedure=pcrs.UPDATE_PROCEDURE,
                recorded=bool(pcrs.recorded(journal)))
    if any(u.entry_id for u in uses):
        res.warnings = [PCR_SELECTOR_NEVER_MATCHES]
    return res
