"""The proofs of the guide's Strategy 2 (dual attestation) and of finalize, with evidence.

Evidence: the server's NodeAttestors, every agent of the server grouped by its
attestation method (with its node and the workloads under it), the config
diff and the restarted server of finalize.
"""

from __future__ import annotations

from typing import Any

from spire_migration.procedures import finalize as fin
from spire_migration.verdict import CheckResult, StepResult, guarded
from spire_migration.checks.migration_proofs import proc_text
from spire_migration.node.facade import Node
from spire_migration.node.spiffe_ids import TPM_ATTESTORS
from spire_migration.redact import redact


def dual_mode_state(node: Node) -> str:
    """``dual``, ``no_tpm`` (no node migrated yet) or ``finalized`` (join_token removed)."""
    found = set(node.server_config().plugins("NodeAttestor"))
    if not found & set(TPM_ATTESTORS):
        return "no_tpm"
    return "dual" if "join_token" in found else "finalized"


@guarded
def server_dual_mode(node: Node) -> CheckResult:
    """The server runs join_token and the TPM node attestor side by side."""
    found = sorted(node.server_config().plugins("NodeAttestor"))
    healthy = node.server.healthy()
    ok = healthy and "join_token" in found and bool(set(found) & set(TPM_ATTESTORS))
    return CheckResult("server runs join_token and the TPM attestor side by side", ok,
                       "a healthy server with NodeAttestors join_token and a TPM one",
                       f"NodeAttestors {found}, server {'healthy' if healthy else 'NOT healthy'}",
                       {"node_attestors": found, "server": proc_text(node.server_proc())},
                       "add the TPM attestor next to join_token (migration step 4 does)")


def _described(groups: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {kind: [fin.describe(a) for a in agents] for kind, agents in groups.items()}


@guarded
def agents_listed_by_method(node: Node) -> CheckResult:
    """Every agent of the server is listed with its node attestation method (this node's included)."""
    groups = fin.agents_by_attestor(node.target)
    evidence = _described(groups)
    mine = node.agent_id()
    listed = any(a["id"] == mine for agents in groups.values() for a in agents)
    odd = sorted(set(groups) - {"join_token", *TPM_ATTESTORS})
    found = "; ".join(f"{k}: {len(v)}" for k, v in evidence.items())
    found += ("" if listed else f"; this node's agent {mine} is not listed") + (f"; other methods {odd}" if odd else "")
    return CheckResult("which agents use which attestation method", listed and not odd,
                       "every agent attested by join_token or a TPM attestor, this node's among them",
                       redact(found), evidence, "migrate or evict the agents listed")


@guarded
def join_token_removed(node: Node, outcome: StepResult) -> CheckResult:
    """server.conf has no join_token node attestor and the restarted server is healthy."""
    found = sorted(node.server_config().plugins("NodeAttestor"))
    healthy = node.server.healthy()
    diff = next((c.split(":\n", 1)[1] for c in outcome.changes if "join_token" in c and ":\n" in c), "")
    return CheckResult("join_token attestor removed from the server", "join_token" not in found and healthy,
                       f"NodeAttestors without join_token in {node.target.server.config}, a healthy server",
                       f"NodeAttestors {found}, server {'healthy' if healthy else 'NOT healthy'}",
                       {"node_attestors": found, "server": proc_text(node.server_proc()),
                        "diff": diff or "(no change: already finalized)",
                        "restarted_this_run": [c for c in outcome.changes if ":\n" not in c],
                        "notes": list(outcome.notes)},
                       f"read {node.target.server.log}; the backup is in the journal ({fin.BACKUP})")


@guarded
def every_agent_tpm(node: Node) -> CheckResult:
    """Every agent of the server is TPM-attested."""
    groups = _described(fin.agents_by_attestor(node.target))
    other = {k: v for k, v in groups.items() if k not in TPM_ATTESTORS}
    return CheckResult("every agent TPM-attested", not other, f"only agents attested by {list(TPM_ATTESTORS)}",
                       redact(f"other agents: {other}" if other else
                              "; ".join(f"{k}: {len(v)}" for k, v in groups.items())),
                       groups, "migrate or evict the agents listed")
