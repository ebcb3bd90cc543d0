"""Keep secrets out of logs, reports and the journal.

Join tokens are secrets until spent, and a join_token agent ID carries the
token, so every join_token path segment is replaced by a short fingerprint
that still tells agents apart.

>>> redact("spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab")
'spiffe://example.org/spire/agent/join_token/<redacted:60b0bd94>'
>>> redact("spire-agent run -joinToken 0d1f5c2e-aaaa -config a.conf")
'spire-agent run -joinToken <redacted> -config a.conf'
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_SECRETS: set[str] = set()

_PATTERNS = [
    (re.compile(r"(join_token/)([A-Za-z0-9._~-]+)"), None),
    (re.compile(r"(-joinToken[ =]+)([^\s\"',]+)"), "<redacted>"),
    (re.compile(r"""((?:join_token|devid_password|owner_hierarchy_password|endorsement_hierarchy_password)\s*=\s*")([^"]+)(")"""), "<redacted>"),
    (re.compile(r"""(["']?(?:token|value)["']?\s*[:=]\s*["'])([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(["'])"""), "<redacted>"),
]


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def register_secret(secret: str) -> None:
    """Redact this exact string wherever it appears from now on."""
    if secret and len(secret) >= 6:
        _SECRETS.add(secret)


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure (keys and values)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    return value


def redact(text: str) -> str:
    """Return ``text`` with every known secret replaced."""
    if not text:
        return text
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, f"<redacted:{fingerprint(secret)}>")
    for pattern, replacement in _PATTERNS:
        if replacement is None:
            text = pattern.sub(lambda m: m.group(1) + (
                m.group(2) if m.group(2).startswith("<redacted") else f"<redacted:{fingerprint(m.group(2))}>"), text)
        else:
            text = pattern.sub(lambda m, r=replacement: m.group(1) + r + (m.group(3) if m.re.groups >= 3 else ""), text)
    return text
