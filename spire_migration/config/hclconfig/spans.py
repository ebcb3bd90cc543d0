"""Structure of an HCL text: bodies of attributes and blocks with their exact
spans, and the text helpers that splice at those spans."""

from __future__ import annotations

from dataclasses import dataclass, field

from spire_migration.config.hclconfig.tokens import ScanError, Tok


@dataclass
class Attr:
    name: str
    start: int        # first char of the name
    eq: int           # offset of '='
    value_start: int
    value_end: int    # exclusive


@dataclass
class Block:
    type: str
    labels: list[str]
    start: int        # first char of the type
    lbrace: int       # offset of '{'
    rbrace: int       # offset of '}'
    items: list[Attr | Block] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.rbrace + 1

    @property
    def attrs(self) -> list[Attr]:
        return [x for x in self.items if isinstance(x, Attr)]

    @property
    def blocks(self) -> list[Block]:
        return [x for x in self.items if isinstance(x, Block)]


_OPEN = {"lbrace", "lbrack", "lparen"}
_CLOSE = {"rbrace", "rbrack", "rparen"}


def parse_body(toks: list[Tok], i: int, *, nested: bool) -> tuple[list[Attr | Block], int]:
    """Items of a body from token ``i``; returns (items, index of closing rbrace or len)."""
    items: list[Attr | Block] = []
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind in ("nl", "comment"):
            i += 1
            continue
        if t.kind == "rbrace":
            if nested:
                return items, i
            raise ScanError("unexpected '}'", t.start)
        if t.kind != "ident":
            raise ScanError(f"unexpected {t.kind}", t.start)
        j = _skip_comments(toks, i + 1)
        if j < n and toks[j].kind == "eq":
            k, depth = j + 1, 0
            vstart = vend = None
            while k < n:
                u = toks[k]
                if u.kind in _OPEN:
                    depth += 1
                elif u.kind in _CLOSE:
                    if depth == 0:
                        break          # closes the enclosing body
                    depth -= 1
                elif u.kind == "nl" and depth == 0:
                    break
                if u.kind not in ("nl", "comment"):
                    vstart = u.start if vstart is None else vstart
                    vend = u.end
                k += 1
            if vstart is None:
                raise ScanError(f"attribute {t.value} has no value", t.start)
            items.append(Attr(t.value, t.start, toks[j].start, vstart, vend))
            i = k
            continue
        labels: list[str] = []
        while j < n and toks[j].kind in ("string", "ident"):
            labels.append(toks[j].value)
            j = _skip_comments(toks, j + 1)
        if j < n and toks[j].kind == "lbrace":
            body, close = parse_body(toks, j + 1, nested=True)
            if close >= n:
                raise ScanError(f"block {t.value} is never closed", toks[j].start)
            items.append(Block(t.value, labels, t.start, toks[j].start, toks[close].start, body))
            i = close + 1
            continue
        raise ScanError(f"cannot read the statement starting with {t.value!r}", t.start)
    if nested:
        return items, n
    return items, n


def _skip_comments(toks: list[Tok], i: int) -> int:
    while i < len(toks) and toks[i].kind == "comment":
        i += 1
    return i


def line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def line_end(text: str, pos: int) -> int:
    """Offset of the line's end-of-line sequence (``\\r\\n`` or ``\\n``) or len."""
    j = text.find("\n", pos)
    if j < 0:
        return len(text)
    return j - 1 if j > 0 and text[j - 1] == "\r" and j - 1 >= pos else j


def indent_at(text: str, pos: int) -> str:
    ls = line_start(text, pos)
    line = text[ls:pos]
    return line[:len(line) - len(line.lstrip(" \t"))]


def starts_line(text: str, pos: int) -> bool:
    return not text[line_start(text, pos):pos].strip()


def _eol_len(text: str, pos: int) -> int:
    if text.startswith("\r\n", pos):
        return 2
    return 1 if text.startswith("\n", pos) else 0


def remove_span(text: str, toks: list[Tok], start: int, end: int, parent: Block,
                 *, collapse_blank: bool) -> str:
    """Remove text[start:end]; whole lines when the span owns its lines (a comment
    after it on its last line goes too)."""
    ls = line_start(text, start)
    le = line_end(text, end)
    trailing = [t for t in toks if end <= t.start < le]
    if starts_line(text, start) and all(t.kind == "comment" for t in trailing):
        cut_end = le + _eol_len(text, le)
        cut_start = ls
        if collapse_blank and ls > 0:
            prev_ls = line_start(text, ls - 1)
            next_le = line_end(text, cut_end)
            prev_blank = not text[prev_ls:ls].strip()
            next_line = text[cut_end:next_le].strip()
            closes_parent = cut_end <= parent.rbrace < next_le + 1
            if prev_blank and (not next_line or (next_line == "}" and closes_parent)):
                cut_start = prev_ls
        return text[:cut_start] + text[cut_end:]
    after = text[end:].lstrip(" \t")
    if after.startswith(("\n", "\r")) or not after:
        return text[:start].rstrip(" \t") + after
    return text[:start] + after
