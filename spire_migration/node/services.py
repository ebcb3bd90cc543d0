"""Start, stop and find the SPIRE server and agent of one target.

Processes are found by pid file, then by the owner of their socket, and only
count when /proc says they run the expected binary: nothing is ever stopped by
name. The agent's own identity is read from its data dir (``agent-data.json``,
where SPIRE caches the agent SVID), which is also why a migrating agent must
forget that cached SVID: an agent with a valid cached SVID does not attest
again, whatever NodeAttestor its config names. That file is only believed once
proven: its SVID chains to the server's trust bundle and the server's record of
that agent carries the SVID's serial number.

A join token reaches the agent in a 0600 file (``-joinTokenFile``; the path is
no secret), removed as soon as the agent has attested: never on a command line.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_private_key

from spire_migration.node import process, systemd, units
from spire_migration.errors import ProcessError, SpireError
from spire_migration.fileio import refuse_link, write_file
from spire_migration.node.process import ProcInfo
from spire_migration.redact import redact
from spire_migration.retry import poll
from spire_migration.secret import Secret, secret_file
from spire_migration.node.spire import CliRunner, SpireAgent, SpireServer
from spire_migration.config.target import AgentSpec, ServerSpec, Target


def server_cli(t: Target, runner: CliRunner | None = None) -> SpireServer:
    """The target's server CLI, run here or through ``runner`` (the server host of a fleet)."""
    return SpireServer(t.server_bin, t.server.socket, runner=runner)


def agent_cli(t: Target) -> SpireAgent:
    return SpireAgent(t.agent_bin, t.agent.socket)


def server_proc(t: Target) -> ProcInfo | None:
    """The server process: its binary, run by root or by the owner of its data dir (its user);
    with ``server.unit`` the unit's main process (:func:`units.unit_proc`)."""
    user = _owner(t.server.data_dir)
    if t.server.unit:
        return units.unit_proc(t.server.unit, t.server_bin, t.server.config, process.allowed_uids(user))
    return process.find(t.server_bin, t.server.pid_file, t.server.socket, user=user)


def _owner(path: Path) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def agent_proc(t: Target) -> ProcInfo | None:
    """The agent process (pid file, socket owner), or with ``agent.unit`` the unit's main process."""
    if t.agent.unit:
        return units.unit_proc(t.agent.unit, t.agent_bin, t.agent.config, process.allowed_uids(t.agent.user))
    return process.find(t.agent_bin, t.agent.pid_file, t.agent.socket, user=t.agent.user)


# -- the one way to start and stop each: systemd (a unit set) or the suite's own pid ---------
def start_server(t: Target) -> ProcInfo:
    """Start the server with its config file and poll until it is healthy."""
    if t.server.unit:
        return _start_unit(t, "server", lambda: server_cli(t).healthy())
    if (running := server_proc(t)) is not None:
        units.refuse_unit_managed(t.server_bin, running, "server")
        return running
    units.refuse_unit_managed(t.server_bin, None, "server")
    t.server.socket.parent.mkdir(parents=True, exist_ok=True)
    info = process.start([str(t.server_bin), "run", "-config", str(t.server.config)],
                         log=t.server.log, pid_file=t.server.pid_file)
    try:
        poll(lambda: process.proc_info(info.pid) is not None and server_cli(t).healthy(),
             timeout=t.thresholds.start_timeout_s, what="spire-server to become healthy",
             error=SpireError)
    except SpireError as exc:
        if process.proc_info(info.pid) is None:
            raise ProcessError("spire-server exited during start", expected="a healthy server",
                               found=log_tail(t, "server"), remedy=f"read {log_source(t, 'server')}") from exc
        raise
    return info


def start_agent(t: Target, join_token: Secret | None = None,
                identify: Callable[[Target], str | None] | None = None) -> ProcInfo:
    """Start the agent; with ``join_token`` it attests by join_token whatever its config says.

    Pid mode: the token goes in a 0600 file (``-joinTokenFile``) that lives only until
    the agent has attested: with a token this returns once the agent is ready (proven by
    ``identify``, see :func:`wait_agent_ready`).
    With ``agent.unit`` the unit reads agent.conf only: the token goes in the 0600 file its
    ``join_token_file`` names (Phase 3 under systemd; SPIRE reads it at every start, so it stays,
    spent once the agent has attested), and this returns once the agent is active and healthy.
    """
    if t.agent.unit:
        units.join_token_in_exec_start(t.agent.unit, join_token_flag)
        if join_token:
            units.write_join_token_file(t.agent.unit, t.agent.config, t.agent.user, Secret(join_token))
        return _start_unit(t, "agent", lambda: agent_cli(t).healthy())
    if (running := agent_proc(t)) is not None:
        units.refuse_unit_managed(t.agent_bin, running, "agent")
        return running
    units.refuse_unit_managed(t.agent_bin, None, "agent")
    t.agent.socket.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(t.agent_bin), "run", "-config", str(t.agent.config)]
    if not join_token:
        return process.start(argv, log=t.agent.log, pid_file=t.agent.pid_file)
    with secret_file(Secret(join_token), "join_token") as path:
        info = process.start(argv + ["-joinTokenFile", str(path)], log=t.agent.log, pid_file=t.agent.pid_file)
        wait_agent_ready(t, info, identify)
    return info


def _start_unit(t: Target, component: str, healthy: Callable[[], bool]) -> ProcInfo:
    """``systemctl start`` the component's unit (never beside a copy the suite started by pid)."""
    spec, binary, find = _component(t, component)
    units.refuse_stray(spec.unit, binary.name, process.find(binary, spec.pid_file, spec.socket,
                                                            user=getattr(spec, "user", None)), component)
    return units.start(spec.unit, binary.name, lambda: find(t), healthy, t.thresholds.start_timeout_s)


def stop_server(t: Target) -> ProcInfo | None:
    """Stop the server: ``systemctl stop`` with a unit, else its exact pid."""
    return _stop(t, "server")


def stop_agent(t: Target) -> ProcInfo | None:
    """Stop the agent: ``systemctl stop`` with a unit, else its exact pid."""
    return _stop(t, "agent")


def _stop(t: Target, component: str) -> ProcInfo | None:
    spec, binary, find = _component(t, component)
    if spec.unit:
        return units.stop(spec.unit, lambda: find(t))
    info = find(t)
    units.refuse_unit_managed(binary, info, component)
    if info:
        process.stop(info, pid_file=spec.pid_file)
    return info


def _component(t: Target, component: str) -> tuple[ServerSpec | AgentSpec, Path, Callable[[Target], ProcInfo | None]]:
    """(its target section, its binary, how to find its process) for ``"server"`` or ``"agent"``."""
    if component == "server":
        return t.server, t.server_bin, server_proc
    return t.agent, t.agent_bin, agent_proc


def check_service_mode(t: Target) -> list[str]:
    """Before anything changes: how each SPIRE process is managed, refused when the suite would fight
    systemd (a unit runs it but the target names none) or the agent's unit passes a join token."""
    notes = []
    for component in ("server", "agent"):
        spec, binary, find = _component(t, component)
        if spec.unit:
            if component == "agent":
                units.join_token_in_exec_start(spec.unit, join_token_flag)
            find(t)   # the unit's main process, when it runs one, is the expected binary and config
            notes.append(f"spire-{component} is managed by systemd unit {spec.unit}")
        else:
            units.refuse_unit_managed(binary, find(t), component)
    return notes


def log_source(t: Target, component: str) -> str:
    """Where the ``"server"``'s or ``"agent"``'s log is read: its file, or ``journalctl -u <unit>``."""
    spec = _component(t, component)[0]
    return f"journalctl -u {spec.unit}" if spec.unit else str(spec.log)


def log_text(t: Target, component: str) -> str:
    """The component's whole log on this machine: the unit's journal, or the log file (no unit, or a
    unit that sends its output to a file: ``StandardOutput=append:FILE``); "" when none."""
    spec = _component(t, component)[0]
    if spec.unit and not systemd.logs_to_file(spec.unit):
        return systemd.journal(spec.unit)
    try:
        return spec.log.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(t: Target, component: str, lines: int = 12) -> str:
    """The last lines of the component's log, redacted, for an error message."""
    spec = _component(t, component)[0]
    if spec.unit:
        return systemd.journal_tail(spec.unit, max(lines, 20))
    return redact(_tail(spec.log, lines))


def token_ttl(t: Target) -> int:
    """A join token lives just long enough for the agent to start and attest (seconds)."""
    return int(t.thresholds.start_timeout_s) + 30


def join_token_flag(argv: Sequence[str]) -> str | None:
    """The join-token flag in an agent's argv (``-joinToken``, ``-joinTokenFile``, ``--x=``), if any."""
    for arg in argv[1:]:
        name = arg.lstrip("-").partition("=")[0]
        if arg.startswith("-") and name in ("joinToken", "joinTokenFile"):
            return f"-{name}"
    return None


def wait_agent_ready(t: Target, info: ProcInfo,
                     identify: Callable[[Target], str | None] | None = None) -> str:
    """Poll until the agent is healthy and has an SVID; returns its SPIFFE ID, proven by
    ``identify`` (default :func:`agent_identity`, against the server; on a node without the
    server's API, :func:`node_agent_identity`)."""
    identify = identify or agent_identity

    def ready() -> str | None:
        if process.proc_info(info.pid) is None:
            raise ProcessError("spire-agent exited during start", expected="a running agent",
                               found=log_tail(t, "agent"), remedy=f"read {log_source(t, 'agent')}")
        return identify(t) if agent_cli(t).healthy() else None

    try:
        return poll(ready, timeout=t.thresholds.start_timeout_s,
                    what="spire-agent to attest and become healthy", error=ProcessError)
    except ProcessError as exc:
        if process.proc_info(info.pid) is None or "exited" in exc.message:
            raise ProcessError("spire-agent did not attest", expected="a healthy, attested agent",
                               found=log_tail(t, "agent"), remedy=f"read {log_source(t, 'agent')}") from exc
        raise


def agent_data_file(t: Target) -> Path:
    return t.agent.data_dir / "agent-data.json"


def agent_identity(t: Target) -> str | None:
    """The agent's SPIFFE ID, proven: None when it has no cached SVID, the server is not
    reachable or has no such agent (evicted, never attested).

    Raises :class:`SpireError` when the cached SVID does not chain to the
    server's trust bundle, its key is not among the agent's own keys
    (KeyManager "disk"), or the server's record of that agent names another
    SVID (serial number): the file was crafted or copied, and nothing may act
    on the agent it names.
    """
    chain = _cached_svid(t)
    ident = _uri(chain[0]) if chain else None
    if ident is None:
        return None
    server = server_cli(t)
    if not server.healthy():
        return None
    try:
        roots = x509.load_pem_x509_certificates(server.bundle_pem().encode())
    except (SpireError, ValueError):
        return None
    if not _chains_to(chain, roots):
        raise SpireError(f"{agent_data_file(t)} holds an SVID the server did not issue",
                         expected="an agent SVID that chains to the server's trust bundle",
                         found=f"an SVID for {redact(ident)} that does not", remedy=_CRAFTED)
    if _holds_key(t, chain[0]) is False:
        raise SpireError(f"{agent_data_file(t)} names {redact(ident)}, whose key this node's agent does not hold",
                         expected=f"the SVID's public key among the agent's keys ({_keys_file(t)})",
                         found="another key: the SVID was copied from another node", remedy=_CRAFTED)

    record: list[dict | None] = [None]

    def settled() -> bool:   # an SVID rotation reaches the server's record within seconds
        record[0], cached = server.agent(ident), _cached_svid(t)
        return record[0] is None or bool(cached) and str(record[0].get("x509svid_serial_number")) == str(
            cached[0].serial_number)

    if not poll(settled, timeout=6.0, raise_on_timeout=False, what="the server's record of the agent to match its SVID"):
        raise SpireError(f"{agent_data_file(t)} names {redact(ident)}, but not with the SVID the server issued it",
                         expected="the serial number of the server's record of that agent",
                         found=f"serial {chain[0].serial_number}", remedy=_CRAFTED)
    return ident if record[0] is not None else None


_CRAFTED = ("do not migrate this node: its agent-data.json was replaced; stop the agent, remove the file, "
            "and let the agent attest again")


def node_agent_identity(t: Target) -> str | None:
    """The agent's SPIFFE ID where the server's API is not (a fleet's agent node): its cached
    SVID, proven against the agent's own cached trust bundle and its own key (KeyManager
    "disk"); None when it has no SVID. The server side proves the rest (its record, by serial).

    Raises :class:`SpireError` for an SVID that does not chain to that bundle or whose key
    the agent does not hold.
    """
    try:
        text = agent_data_file(t).read_text()
    except FileNotFoundError:
        return None
    chain = _svid_chain(text)
    ident = _uri(chain[0]) if chain else None
    if ident is None:
        return None
    roots = _certs(json.loads(text).get("bundle"))
    if not roots or not _chains_to(chain, roots):
        raise SpireError(f"{agent_data_file(t)} holds an SVID its own trust bundle does not vouch for",
                         expected="an agent SVID that chains to the agent's cached bundle",
                         found=f"an SVID for {redact(ident)} that does not", remedy=_CRAFTED)
    if _holds_key(t, chain[0]) is False:
        raise SpireError(f"{agent_data_file(t)} names {redact(ident)}, whose key this node's agent does not hold",
                         expected=f"the SVID's public key among the agent's keys ({_keys_file(t)})",
                         found="another key: the SVID was copied from another node", remedy=_CRAFTED)
    return ident


def agent_id_from_data(text: str | None) -> str | None:
    """The SPIFFE ID named by the text of an agent-data.json, UNVERIFIED (for reads through a remote view;
    on the node itself use :func:`agent_identity`, which proves it)."""
    chain = _svid_chain(text)
    return _uri(chain[0]) if chain else None


def _cached_svid(t: Target) -> list[x509.Certificate]:
    """The agent SVID chain cached in agent-data.json (leaf first), unverified."""
    try:
        return _svid_chain(agent_data_file(t).read_text())
    except FileNotFoundError:
        return []


def _svid_chain(text: str | None) -> list[x509.Certificate]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    return _certs(data.get("svid"))


def _certs(items: object) -> list[x509.Certificate]:
    """Certificates from agent-data.json's base64 items (DER, or a PEM bundle); [] if malformed."""
    if not isinstance(items, list):
        return []
    certs = []
    for item in items:
        try:
            raw = base64.b64decode(item)
            certs += x509.load_pem_x509_certificates(raw) if raw.startswith(b"-----") else \
                [x509.load_der_x509_certificate(raw)]
        except (ValueError, TypeError):
            return []
    return certs


def _keys_file(t: Target) -> Path:
    return t.agent.data_dir / "keys.json"


def _holds_key(t: Target, cert: x509.Certificate) -> bool | None:
    """Whether the agent's own keys (KeyManager "disk": keys.json) include the SVID's key; None: no such file.

    A copied agent-data.json carries another node's certificate, never its private key.
    """
    try:
        keys = json.loads(_keys_file(t).read_text()).get("keys") or {}
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for der in keys.values():
        try:
            public = load_der_private_key(base64.b64decode(der), password=None).public_key()
        except (ValueError, TypeError):
            continue
        if public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == spki:
            return True
    return False


def _uri(cert: x509.Certificate) -> str | None:
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        return None
    return uris[0] if uris else None


def _chains_to(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> bool:
    """True when ``chain[0]`` is signed, through ``chain[1:]``, by one of ``roots``; all in date."""
    now = datetime.now(timezone.utc)
    cert, pool = chain[0], chain[1:]
    for _ in range(len(chain) + 1):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return False
        for issuer in roots + pool:
            if issuer.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if issuer in roots:
                return True
            cert, pool = issuer, [c for c in pool if c is not issuer]
            break
        else:
            return False
    return False


def forget_agent_svid(t: Target) -> bool:
    """Drop the cached agent SVID (keep the bundle, the owner and the mode) so the agent attests afresh."""
    path = agent_data_file(t)
    refuse_link(path)  # the agent's user may plant one in its data dir
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    if not data.get("svid"):
        return False
    data["svid"] = None
    data["reattestable"] = False
    write_file(path, json.dumps(data))
    return True


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"{path} does not exist"
    return "\n" + "\n".join(text)


def started_before(info: ProcInfo, path: Path) -> bool:
    """True when the process started before ``path`` was last written (it runs an old config)."""
    try:
        return info.started_at + 0.5 < os.stat(path).st_mtime
    except FileNotFoundError:
        return False
