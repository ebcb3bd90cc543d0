"""A facade over one target node: SPIRE CLIs, processes, configs, TPM, workload.

Reads are cached per instance only where a run reads the same thing many
times (the agent list, the entries); create a new :class:`Node` after
changing anything.
"""

from __future__ import annotations

import enum
from functools import cached_property
from typing import Any

from . import services
from .errors import ConfigError
from .hclconfig import SpireConfig, load_config
from .process import ProcInfo
from .runtimes import get_runtime
from .runtimes.base import WorkloadRuntime
from .spire import SpireAgent, SpireServer, id_str
from .target import Target

TPM_ATTESTORS = ("tpm_devid", "tpm")


class Phase(enum.Enum):
    """Where a node stands in the migration."""

    PHASE3 = "Phase 3 (join_token)"
    PHASE4 = "Phase 4 (TPM)"
    TRANSITION = "half way (config and identity disagree)"
    UNKNOWN = "unknown (agent config unreadable)"


class Node:
    """One node as the suite sees it.

    >>> from spire_migration.target import Target
    >>> Node(Target()).server.socket.as_posix()
    '/tmp/spire-server/private/api.sock'
    """

    def __init__(self, target: Target) -> None:
        self.target = target

    # -- SPIRE ----------------------------------------------------------------
    @property
    def server(self) -> SpireServer:
        return services.server_cli(self.target)

    @property
    def agent(self) -> SpireAgent:
        return services.agent_cli(self.target)

    def server_proc(self) -> ProcInfo | None:
        return services.server_proc(self.target)

    def agent_proc(self) -> ProcInfo | None:
        return services.agent_proc(self.target)

    def agent_id(self) -> str | None:
        """This node's agent SPIFFE ID, from the agent's cached SVID."""
        return services.agent_identity(self.target)

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

    # -- configs --------------------------------------------------------------
    def server_config(self) -> SpireConfig:
        return load_config(self.target.server.config)

    def agent_config(self) -> SpireConfig:
        return load_config(self.target.agent.config)

    def phase(self) -> Phase:
        try:
            attestors = set(self.agent_config().plugins("NodeAttestor"))
        except ConfigError:
            return Phase.UNKNOWN
        ident = self.agent_id() or ""
        config_tpm = bool(attestors & set(TPM_ATTESTORS)) and "join_token" not in attestors
        ident_tpm = any(f"/spire/agent/{a}/" in ident for a in TPM_ATTESTORS)
        ident_jt = "/spire/agent/join_token/" in ident
        if config_tpm and ident_tpm:
            return Phase.PHASE4
        if attestors == {"join_token"} and (ident_jt or not ident):
            return Phase.PHASE3
        return Phase.TRANSITION

    # -- workload -------------------------------------------------------------
    @cached_property
    def runtime(self) -> WorkloadRuntime:
        return get_runtime(self.target)
