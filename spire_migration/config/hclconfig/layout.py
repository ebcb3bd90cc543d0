"""Where new text goes: the file's indentation step, and insertion of a block
or an attribute in the file's own style."""

from __future__ import annotations

from spire_migration.config.hclconfig import render
from spire_migration.config.hclconfig.render import DEFAULT_UNIT
from spire_migration.config.hclconfig.spans import Block, indent_at, line_start, line_end, starts_line


def unit_of(text: str, parent: Block) -> str:
    """Indentation step of the file, read from a child of ``parent`` if it has one."""
    p_indent = indent_at(text, parent.start)
    for child in parent.items:
        if starts_line(text, child.start):
            c_indent = indent_at(text, child.start)
            if len(c_indent) > len(p_indent) and c_indent.startswith(p_indent):
                return c_indent[len(p_indent):]
    for line in text.splitlines():
        ws = line[:len(line) - len(line.lstrip(" \t"))]
        if ws and line.strip():
            return "\t" if ws.startswith("\t") else DEFAULT_UNIT
    return DEFAULT_UNIT


def insert_block(text: str, nl: str, parent: Block, kind: str, name: str, body: str, unit: str) -> str:
    """``text`` with the block added after ``parent``'s last child."""
    p_indent = indent_at(text, parent.start)
    siblings = [c for c in parent.items if starts_line(text, c.start)]
    indent = indent_at(text, siblings[-1].start) if siblings else p_indent + unit
    rendered = indent + render.render_block(kind, name, body, indent, unit, nl)
    rb = parent.rbrace
    ls = line_start(text, rb)
    if not text[ls:rb].strip():
        # Closing brace on its own line: insert whole lines before it.
        prev = text[line_start(text, max(ls - 1, 0)):ls].strip() if ls > 0 else ""
        sep = nl if parent.items and prev else ""
        return text[:ls] + sep + rendered + nl + text[ls:]
    head = text[:rb].rstrip(" \t")
    return head + nl + rendered + nl + p_indent + text[rb:]


def insert_attr(text: str, nl: str, block: Block, key: str, rendered: str) -> str:
    """``text`` with ``key = rendered`` added after ``block``'s last attribute."""
    unit = unit_of(text, block)
    attrs = block.attrs
    if attrs:
        last = attrs[-1]
        indent = indent_at(text, last.start) if starts_line(text, last.start) else \
            indent_at(text, block.start) + unit
        eq_col = last.eq - last.start
        name = key.ljust(eq_col) if eq_col > len(last.name) + 1 and eq_col >= len(key) + 1 else key + " "
        line = f"{indent}{name}= {rendered}"
        le = line_end(text, last.value_end)
        if block.rbrace < le:   # closing brace on the attribute's line
            return text[:last.value_end] + nl + line + nl + indent_at(text, block.start) + \
                text[last.value_end:].lstrip(" \t")
        return text[:le] + nl + line + text[le:]
    children = [c for c in block.items if starts_line(text, c.start)]
    indent = indent_at(text, children[0].start) if children else indent_at(text, block.start) + unit
    line = f"{indent}{key} = {rendered}"
    le = line_end(text, block.lbrace)
    if le < block.rbrace:
        return text[:le] + nl + line + text[le:]
    return text[:block.lbrace + 1] + nl + line + nl + indent_at(text, block.start) + \
        text[block.rbrace:]
