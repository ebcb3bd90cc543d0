"""python-hcl2's output (explicit blocks) turned into plain Python."""

from __future__ import annotations

from typing import Any

import hcl2
from hcl2 import SerializationOptions

from spire_migration.errors import ConfigError

# Explicit blocks (so blocks and objects can be told apart), unquoted strings,
# heredocs as their value, no comments.
READ_OPTIONS = SerializationOptions(
    with_comments=False,
    explicit_blocks=True,
    strip_string_quotes=True,
    preserve_heredocs=False,
)
BLOCK = "__is_block__"


def is_block(v: Any) -> bool:
    return isinstance(v, dict) and v.get(BLOCK) is True


def is_labelled(v: Any) -> bool:
    if not (isinstance(v, dict) and len(v) == 1):
        return False
    inner = next(iter(v.values()))
    return is_block(inner) or is_labelled(inner)


def is_block_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(is_block(x) or is_labelled(x) for x in v)


def plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: (merge_blocks(x) if is_block_list(x) else plain(x))
                for k, x in v.items() if k != BLOCK}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def merge_blocks(blocks: list[Any]) -> Any:
    """One block -> its dict; repeated blocks -> a list; labels -> dict keys."""
    if all(is_block(b) for b in blocks):
        bodies = [plain(b) for b in blocks]
        return bodies[0] if len(bodies) == 1 else bodies
    if all(is_labelled(b) for b in blocks):
        by_label: dict[str, list[Any]] = {}
        for b in blocks:
            (label, inner), = b.items()
            by_label.setdefault(label, []).append(inner)
        return {label: merge_blocks(inners) for label, inners in by_label.items()}
    return [plain(b) for b in blocks]


def body_value(kind: str, name: str, body: str) -> dict[str, Any]:
    """A plugin body given as HCL text, as plain Python (what the edit must read back)."""
    try:
        return plain(hcl2.loads(body, serialization_options=READ_OPTIONS))
    except Exception as exc:
        raise ConfigError(f'body of {kind} "{name}" is not valid HCL', expected="an HCL body",
                          found=str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                          remedy="fix the plugin body") from exc
