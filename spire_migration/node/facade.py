"""One target node as every checklist reads it: ``Node(target, view)``.

Everything read from the node's host (agent.conf, the agent's cached SVID,
file owners and modes, the journal, the agent process, the logs) goes through
its :class:`~spire_migration.node.view.HostView` ``node.view``: this machine
(:class:`~spire_migration.node.view.LocalView`, the default) or a testinfra host
(``--hosts``). The server's side (its API, server.conf, its process) and what
only works where the suite runs (the workload runtime, tpm2-pytss) are read
here, through ``node.server_view``; ``node.view.is_local`` says whether the
node is this machine.

Reads are cached per instance only where a run reads the same thing many
times (the agent list, the entries, the journal); create a new :class:`Node`
after changing anything.
"""

from __future__ import annotations

import enum
from functools import cached_property
from pathlib import Path
from typing import Any

from spire_migration.node import services
from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig import SpireConfig, parse_config
from spire_migration.node.view import HostView, LocalView
from spire_migration.records.journal import Journal
from spire_migration.node.process import ProcInfo
from spire_migration.node.runtimes import get_runtime
from spire_migration.node.runtimes.base import WorkloadRuntime
from spire_migration.node.spiffe_ids import JOIN_TOKEN, TPM_ATTESTORS, agent_kind, is_tpm_agent
from spire_migration.node.spire import SpireAgent, SpireServer, id_str
from spire_migration.config.target import Target

__all__ = ["Node", "Phase", "TPM_ATTESTORS"]


class Phase(enum.Enum):
    """Where a node stands in the migration."""

    PHASE3 = "Phase 3 (join_token)"
    PHASE4 = "Phase 4 (TPM)"
    TRANSITION = "half way (config and identity disagree)"
    UNKNOWN = "unknown (agent config unreadable)"


class Node:
    """One node as the suite sees it.

    >>> from spire_migration.config.target import Target
    >>> n = Node(Target())
    >>> n.server.socket.as_posix(), n.view.name
    ('/tmp/spire-server/private/api.sock', 'local')
    """

    def __init__(self, target: Target, view: HostView | None = None) -> None:
        self.target = target
        self.view = view if view is not None else LocalView()
        #: The server's side (server.conf, its process, the DevID CA it trusts) is read where the suite
        #: runs: the SPIRE server API is a unix socket, so the server is there.
        self.server_view: HostView = LocalView()

    # -- SPIRE, through its API where the suite runs ------------------------------
    @property
    def server(self) -> SpireServer:
        return services.server_cli(self.target)

    @property
    def agent(self) -> SpireAgent:
        return services.agent_cli(self.target)

    @cached_property
    def agents(self) -> list[dict[str, Any]]:
        return self.server.agents()

    @cached_property
    def entries(self) -> list[dict[str, Any]]:
        return self.server.entries()

    def agent_record(self, agent_id: str) -> dict[str, Any] | None:
        return next((a for a in self.agents if id_str(a["id"]) == agent_id), None)

    def entries_under(self, parent_id: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if id_str(e["parent_id"]) == parent_id]

    def alias_entries_for(self, agent_id: str) -> list[dict[str, Any]]:
        """Node alias entries whose selector names this agent (``spiffe_id:<agent ID>``)."""
        return [e for e in self.entries
                if id_str(e["parent_id"]) == self.target.server_id
                and any(s["type"] == "spiffe_id" and s["value"] == agent_id for s in e.get("selectors") or [])]

    def agent_entries(self) -> list[dict[str, Any]]:
        """Entries served to this node's agent: under it or under a node alias that selects it.

        All entries when the agent has no SVID (nothing tells which are its own).
        """
        ident = self.agent_id()
        if not ident:
            return self.entries
        parents = {id_str(e["spiffe_id"]) for e in self.alias_entries_for(ident)} | {ident}
        return [e for e in self.entries if id_str(e["parent_id"]) in parents]

    # -- read through the view ------------------------------------------------------
    def server_proc(self) -> ProcInfo | None:
        """The server process (the unit's main process with ``server.unit``)."""
        t = self.target
        if self.server_view.is_local:
            return services.server_proc(t)
        return self.server_view.process(t.server_bin, t.server.pid_file, t.server.socket)

    def agent_proc(self) -> ProcInfo | None:
        """The agent process: on this machine :func:`services.agent_proc` (checked); on a remote
        host by its pid file, or the main process of ``agent.unit``."""
        t = self.target
        if self.view.is_local:
            return services.agent_proc(t)
        if t.agent.unit:
            return self.view.unit_process(t.agent.unit, t.agent_bin)
        return self.view.process(t.agent_bin, t.agent.pid_file, t.agent.socket)

    def agent_id(self) -> str | None:
        """This node's agent SPIFFE ID, proven against the server (:func:`services.agent_identity`) on the
        node itself while the server answers; otherwise (a remote view, the server stopped) as its
        agent-data.json names it, unproven: nothing changes registrations while the server is down."""
        if self.view.is_local and self.server.healthy():
            return services.agent_identity(self.target)
        return services.agent_id_from_data(self.view.read_text(services.agent_data_file(self.target)))

    def server_config(self, missing_ok: bool = False) -> SpireConfig | None:
        """server.conf; with ``missing_ok`` None when it is unreadable or broken, else a ConfigError."""
        return self._config(self.server_view, self.target.server.config, missing_ok)

    def agent_config(self, missing_ok: bool = False) -> SpireConfig | None:
        """agent.conf; with ``missing_ok`` None when it is unreadable or broken, else a ConfigError."""
        return self._config(self.view, self.target.agent.config, missing_ok)

    @staticmethod
    def _config(view: HostView, path: Path, missing_ok: bool) -> SpireConfig | None:
        text = view.read_text(path)
        if text is None:
            if missing_ok:
                return None
            raise ConfigError(f"{path} cannot be read on {view.name}", expected="a SPIRE config file",
                              found="no such file, or not readable",
                              remedy="check the path in the target description and the file's permissions")
        try:
            return parse_config(text, name=str(path))
        except ConfigError:
            if missing_ok:
                return None
            raise

    def log_lines(self, component: str) -> list[str]:
        """The ``"server"``'s or the ``"agent"``'s log as lines (its file, or with a ``unit`` its
        journal: :func:`services.log_source`); [] when unreadable."""
        view = self.server_view if component == "server" else self.view
        if view.is_local:
            return services.log_text(self.target, component).splitlines()
        spec = self.target.server if component == "server" else self.target.agent
        return ((view.journal(spec.unit) if spec.unit else view.read_text(spec.log)) or "").splitlines()

    @cached_property
    def journal(self) -> Journal | None:
        """The node's journal for reading, when one exists (never created)."""
        root = self.target.journal_root
        text = self.view.read_text(root / "journal.json")
        return None if text is None else Journal.from_text(root, text)

    def tpm_path(self) -> tuple[str, str]:
        """(path the agent opens, where that was read) for the TPM; path "" when SPIRE auto-detects."""
        t = self.target
        cfg = self.agent_config(missing_ok=True)
        if cfg is not None:
            for name, body in cfg.plugins("NodeAttestor").items():
                if name in TPM_ATTESTORS:
                    data = (body or {}).get("plugin_data") or {}
                    if data.get("tpm_device_path"):
                        return str(data["tpm_device_path"]), f"{t.agent.config} tpm_device_path"
                    return "", f"{t.agent.config} (no tpm_device_path: SPIRE looks for one /dev/tpmrm* then /dev/tpm*)"
        return str(t.tpm.device), "target tpm.device (the agent config names no TPM attestor yet)"

    def phase(self) -> Phase:
        """Phase 3, Phase 4 or half way, from the agent config and the agent's identity."""
        cfg = self.agent_config(missing_ok=True)
        if cfg is None:
            return Phase.UNKNOWN
        attestors = set(cfg.plugins("NodeAttestor"))
        ident = self.agent_id()
        config_tpm = bool(attestors & set(TPM_ATTESTORS)) and JOIN_TOKEN not in attestors
        if config_tpm and is_tpm_agent(ident):
            return Phase.PHASE4
        if attestors == {JOIN_TOKEN} and (not ident or agent_kind(ident) == JOIN_TOKEN):
            return Phase.PHASE3
        return Phase.TRANSITION

    # -- workload -------------------------------------------------------------
    @cached_property
    def runtime(self) -> WorkloadRuntime:
        return get_runtime(self.target)
