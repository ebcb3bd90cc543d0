"""Tokenizer: just enough HCL to find statements and matching braces
(strings with ``${...}`` templates, comments, heredocs)."""

from __future__ import annotations

import re
from dataclasses import dataclass


class ScanError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass(frozen=True)
class Tok:
    kind: str   # ident string heredoc lbrace rbrace lbrack rbrack lparen rparen eq nl comment other
    start: int
    end: int
    value: str = ""


IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z][A-Za-z0-9._-]*)\r?\n")
_PAIRS = {"{": "lbrace", "}": "rbrace", "[": "lbrack", "]": "rbrack", "(": "lparen", ")": "rparen"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(raw: str) -> str:
    def sub(m: re.Match[str]) -> str:
        s = m.group(1)
        if s[0] == "u" or s[0] == "U":
            return chr(int(s[1:], 16))
        return _ESCAPES.get(s, s)
    return re.sub(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", sub, raw)


def tokenize(text: str, pos: int = 0, *, in_template: bool = False) -> tuple[list[Tok], int]:
    """Tokens from ``pos``; inside a ``${...}`` template stop at its closing brace."""
    toks: list[Tok] = []
    n = len(text)
    depth = 0
    i = pos
    while i < n:
        c = text[i]
        if c in " \t\r\f\ufeff":
            i += 1
        elif c == "\n":
            toks.append(Tok("nl", i, i + 1))
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            toks.append(Tok("comment", i, j))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ScanError("unterminated /* comment", i)
            toks.append(Tok("comment", i, j + 2))
            i = j + 2
        elif c == '"':
            j = _scan_string(text, i)
            toks.append(Tok("string", i, j, _unescape(text[i + 1:j - 1])))
            i = j
        elif text.startswith("<<", i) and (m := _HEREDOC.match(text, i)):
            j = _scan_heredoc(text, m)
            toks.append(Tok("heredoc", i, j))
            i = j
        elif m := IDENT.match(text, i):
            toks.append(Tok("ident", i, m.end(), m.group()))
            i = m.end()
        elif c in _PAIRS:
            if in_template and c == "{":
                depth += 1
            elif in_template and c == "}":
                if depth == 0:
                    return toks, i + 1
                depth -= 1
            toks.append(Tok(_PAIRS[c], i, i + 1))
            i += 1
        elif c == "=" and not text.startswith(("==", "=>"), i):
            toks.append(Tok("eq", i, i + 1))
            i += 1
        elif text.startswith(("==", "=>", "!=", "<=", ">=", "&&", "||", "..."), i):
            toks.append(Tok("other", i, i + 2 + text.startswith("...", i)))
            i = toks[-1].end
        else:
            toks.append(Tok("other", i, i + 1))
            i += 1
    if in_template:
        raise ScanError("unterminated ${ in a string", pos)
    return toks, n


def _scan_string(text: str, start: int) -> int:
    """End (exclusive) of the quoted string opening at ``start``."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif c == "\n":
            break
        elif text.startswith(("$${", "%%{"), i):
            i += 3
        elif text.startswith(("${", "%{"), i):
            _, i = tokenize(text, i + 2, in_template=True)
        else:
            i += 1
    raise ScanError("unterminated string", start)


def _scan_heredoc(text: str, m: re.Match[str]) -> int:
    """End (exclusive, before the newline) of the heredoc's closing marker."""
    marker = m.group(2)
    i = m.end()
    while i <= len(text):
        j = text.find("\n", i)
        j = len(text) if j < 0 else j
        if text[i:j].strip() == marker:
            return i + len(text[i:j].rstrip())
        if j >= len(text):
            break
        i = j + 1
    raise ScanError(f"heredoc <<{marker} is never closed", m.start())
