"""Start, stop and find the SPIRE server and agent of one target.

Processes are found by pid file, then by the owner of their socket, and only
count when /proc says they run the expected binary: nothing is ever stopped by
name. The agent's own identity is read from its data dir (``agent-data.json``,
where SPIRE caches the agent SVID), which is also why a migrating agent must
forget that cached SVID: an agent with a valid cached SVID does not attest
again, whatever NodeAttestor its config names.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography import x509

from . import process
from .errors import ProcessError, SpireError
from .journal import write_atomic
from .process import ProcInfo
from .redact import register_secret
from .retry import poll
from .spire import SpireAgent, SpireServer
from .target import Target


def server_cli(t: Target) -> SpireServer:
    return SpireServer(t.server_bin, t.server.socket)


def agent_cli(t: Target) -> SpireAgent:
    return SpireAgent(t.agent_bin, t.agent.socket)


def server_proc(t: Target) -> ProcInfo | None:
    return process.find(t.server_bin, t.server.pid_file, t.server.socket)


def agent_proc(t: Target) -> ProcInfo | None:
    return process.find(t.agent_bin, t.agent.pid_file, t.agent.socket)


def start_server(t: Target) -> ProcInfo:
    """Start the server with its config file and poll until it is healthy."""
    if (running := server_proc(t)) is not None:
        return running
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
                               found=_tail(t.server.log), remedy=f"read {t.server.log}") from exc
        raise
    return info


def start_agent(t: Target, join_token: str | None = None) -> ProcInfo:
    """Start the agent; with ``join_token`` it attests by join_token whatever its config says."""
    if (running := agent_proc(t)) is not None:
        return running
    t.agent.socket.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(t.agent_bin), "run", "-config", str(t.agent.config)]
    if join_token:
        register_secret(join_token)
        argv += ["-joinToken", join_token]
    return process.start(argv, log=t.agent.log, pid_file=t.agent.pid_file)


def wait_agent_ready(t: Target, info: ProcInfo) -> str:
    """Poll until the agent is healthy and has an SVID; returns its SPIFFE ID."""
    def ready() -> str | None:
        if process.proc_info(info.pid) is None:
            raise ProcessError("spire-agent exited during start", expected="a running agent",
                               found=_tail(t.agent.log), remedy=f"read {t.agent.log}")
        return agent_identity(t) if agent_cli(t).healthy() else None

    try:
        return poll(ready, timeout=t.thresholds.start_timeout_s,
                    what="spire-agent to attest and become healthy", error=ProcessError)
    except ProcessError as exc:
        if process.proc_info(info.pid) is None or "exited" in exc.message:
            raise ProcessError("spire-agent did not attest", expected="a healthy, attested agent",
                               found=_tail(t.agent.log), remedy=f"read {t.agent.log}") from exc
        raise


def stop_server(t: Target) -> ProcInfo | None:
    info = server_proc(t)
    if info:
        process.stop(info, pid_file=t.server.pid_file)
    return info


def stop_agent(t: Target) -> ProcInfo | None:
    info = agent_proc(t)
    if info:
        process.stop(info, pid_file=t.agent.pid_file)
    return info


def agent_data_file(t: Target) -> Path:
    return t.agent.data_dir / "agent-data.json"


def agent_identity(t: Target) -> str | None:
    """The agent's SPIFFE ID from its cached SVID, or None when it has none."""
    try:
        return agent_id_from_data(agent_data_file(t).read_text())
    except FileNotFoundError:
        return None


def agent_id_from_data(text: str | None) -> str | None:
    """The SPIFFE ID of the agent SVID cached in the text of agent-data.json; None when there is none."""
    try:
        svid = (json.loads(text) or {}).get("svid") if text else None
        if not svid:
            return None
        cert = x509.load_pem_x509_certificate(base64.b64decode(svid[0]))
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound):  # JSONDecodeError and binascii.Error are ValueErrors
        return None
    return uris[0] if uris else None


def forget_agent_svid(t: Target) -> bool:
    """Drop the cached agent SVID (keep the bundle) so the agent attests afresh."""
    path = agent_data_file(t)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    if not data.get("svid"):
        return False
    data["svid"] = None
    data["reattestable"] = False
    write_atomic(path, json.dumps(data), mode=0o600)
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
