"""SPIRE's agent SPIFFE IDs: ``spiffe://<trust domain>/spire/agent/<node attestor>/<...>``.

The node attestor that issued an agent's SVID is the third path segment; every
test of "is this a TPM agent?" reads it here, never by substring.

>>> agent_kind("spiffe://example.org/spire/agent/tpm_devid/4f2a")
'tpm_devid'
>>> is_tpm_agent("spiffe://example.org/spire/agent/join_token/<redacted:1a2b3c4d>"), agent_kind("spiffe://x/app")
(False, None)
>>> agent_id_prefix("example.org", "tpm")
'spiffe://example.org/spire/agent/tpm/'
"""

from __future__ import annotations

#: The node attestors that attest with a TPM (SPIRE's tpm_devid plugin, and the tpm plugin profile).
TPM_ATTESTORS = ("tpm_devid", "tpm")
JOIN_TOKEN = "join_token"


def agent_id_prefix(trust_domain: str, attestor: str) -> str:
    """The start every agent ID issued by ``attestor`` in ``trust_domain`` has."""
    return f"spiffe://{trust_domain}/spire/agent/{attestor}/"


def agent_kind(spiffe_id: str | None) -> str | None:
    """The node attestor an agent ID names, or None when it is no agent ID."""
    if not spiffe_id or not spiffe_id.startswith("spiffe://"):
        return None
    parts = spiffe_id.removeprefix("spiffe://").split("/")
    if len(parts) < 5 or parts[1:3] != ["spire", "agent"] or not parts[3]:
        return None
    return parts[3]


def is_tpm_agent(spiffe_id: str | None) -> bool:
    """The agent ID was issued by a TPM node attestor."""
    return agent_kind(spiffe_id) in TPM_ATTESTORS


def is_join_token_agent(spiffe_id: str | None) -> bool:
    """The agent ID was issued by the join_token node attestor."""
    return agent_kind(spiffe_id) == JOIN_TOKEN
