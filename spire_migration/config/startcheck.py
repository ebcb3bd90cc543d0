"""What SPIRE checks when it starts, checked before guide step 5 stops anything.

A Phase 4 config the server or agent would refuse must be found while Phase 3
still runs: SPIRE's own ``validate`` subcommands (config syntax, each plugin's
configuration), then what ``validate`` cannot know, compared with the running
state: the trust domain against the running server's CA bundle and entries,
the data directories, the socket paths the suite talks to, and the server's
bind port (free, or held by the server being replaced).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cryptography import x509

from spire_migration.node import services
from spire_migration.errors import MigrationError, SpireError
from spire_migration.config.hclconfig import SpireConfig
from spire_migration.redact import redact
from spire_migration.config.target import Target


@dataclass(frozen=True)
class Problem:
    what: str
    expected: str
    found: str
    remedy: str

    def line(self) -> str:
        return f"{self.what}: expected {self.expected}; found {self.found}; do: {self.remedy}"


def check_before_stop(t: Target, server: SpireConfig | None, agent: SpireConfig | None,
                      server_pid: int | None) -> list[str]:
    """Evidence lines when SPIRE would start with these configs; else a MigrationError
    naming every problem (expected / found / remedy), before anything is stopped.
    ``None`` for a side that is not restarted here (a fleet's server part, agent part)."""
    problems: list[Problem] = []
    evidence: list[str] = []
    sides = [(t.server_bin, t.server.config, "spire-server", "server", server),
             (t.agent_bin, t.agent.config, "spire-agent", "agent", agent)]
    sides = [s for s in sides if s[4] is not None]
    for binary, path, what, _, _ in sides:
        problem = validate(binary, path, what)
        if problem:
            problems.append(problem)
        else:
            evidence.append(f"`{what} validate -config {path}`: valid")
    running_td = bundle_trust_domain(t)
    for _, path, _, name, cfg in sides:
        td = cfg.section(name).get("trust_domain")
        if running_td and td != running_td:
            problems.append(Problem(f"{path}: trust_domain", f'"{running_td}" (the running server\'s CA bundle)',
                                    f'"{td}"', f'set trust_domain = "{running_td}" in {path}, or change the '
                                    "trust domain as its own procedure (new CA, every agent re-attests)"))
    if running_td:
        evidence.append(f"trust domain {running_td}: the running server's CA bundle and the configs agree")
        stray = [e for e in services.server_cli(t).entries() if _td(e.get("spiffe_id")) not in (running_td, None)]
        if stray:
            problems.append(Problem("registration entries", f"SPIFFE IDs in {running_td}",
                                    redact(str([e.get("spiffe_id") for e in stray][:3])),
                                    "fix or delete those entries before migrating"))
    problems += _dirs_and_sockets(t, [(name, cfg.section(name)) for _, _, _, name, cfg in sides], evidence)
    if server is not None:
        problems += _bind_port(server.section("server"), server_pid, evidence)
    if problems:
        raise MigrationError(
            "SPIRE would not start again with the Phase 4 configs: nothing was stopped",
            expected="configs the server and agent start with, matching the running state",
            found="\n" + "\n".join(f"- {p.line()}" for p in problems),
            remedy="fix the configs (the Phase 3 processes still run), then run the migration again; "
                   "the journal resumes")
    return evidence


def validate(binary: Path, config: Path, what: str) -> Problem | None:
    """``spire-server validate`` / ``spire-agent validate`` on ``config``."""
    try:
        proc = subprocess.run([str(binary), "validate", "-config", str(config)], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Problem(f"{what} validate", "an answer", redact(str(exc)), f"check {binary}")
    if proc.returncode == 0:
        return None
    out = redact((proc.stdout + proc.stderr).strip())
    return Problem(f"{what} validate -config {config}", "a valid configuration", out,
                   f"fix {config} (the message above is SPIRE's own)")


def bundle_trust_domain(t: Target) -> str | None:
    """The trust domain of the running server's X.509 CA (None when it cannot be read)."""
    try:
        certs = x509.load_pem_x509_certificates(services.server_cli(t).bundle_pem().encode())
    except (SpireError, ValueError):
        return None
    for cert in certs:
        try:
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            continue
        for uri in uris:
            if uri.startswith("spiffe://"):
                return urlparse(uri).netloc
    return None


def _td(spiffe_id: object) -> str | None:
    if isinstance(spiffe_id, dict):
        return spiffe_id.get("trust_domain")
    if isinstance(spiffe_id, str) and spiffe_id.startswith("spiffe://"):
        return urlparse(spiffe_id).netloc
    return None


def _dirs_and_sockets(t: Target, sections: list[tuple[str, dict]], evidence: list[str]) -> list[Problem]:
    problems = []
    for who, cfg in sections:
        spec = t.server if who == "server" else t.agent
        path, sock = spec.config, spec.socket
        data_dir = cfg.get("data_dir")
        if data_dir and not (os.path.isdir(data_dir) and os.access(data_dir, os.W_OK | os.X_OK)):
            problems.append(Problem(f"{path}: data_dir", f"a writable directory {data_dir}",
                                    "missing" if not os.path.exists(data_dir) else "not writable",
                                    f"restore {data_dir} (it holds the {who}'s keys and state)"))
        configured = cfg.get("socket_path")
        if configured and Path(configured).resolve() != sock.resolve():
            problems.append(Problem(f"{path}: socket_path", f"{sock} (the target's {who} socket)", configured,
                                    f"set socket_path = \"{sock}\" or fix [{who}] socket in the target"))
    if not problems:
        evidence.append("data directories writable, socket paths as the target says")
    return problems


def _bind_port(srv: dict, server_pid: int | None, evidence: list[str]) -> list[Problem]:
    try:
        port = int(srv.get("bind_port", 8081))
    except (TypeError, ValueError):
        return []   # validate reports a malformed port
    inodes = _listening_inodes(port)
    if not inodes:
        evidence.append(f"bind port {port} is free")
        return []
    if server_pid is not None and inodes & _socket_inodes(server_pid):
        evidence.append(f"bind port {port} is held by the server being replaced (pid {server_pid})")
        return []
    return [Problem(f"server bind_port {port}", "free, or held by the server being replaced",
                    "held by another process", f"free port {port} or change bind_port")]


def _listening_inodes(port: int) -> set[int]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                out.add(int(cols[9]))
    return out


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out

