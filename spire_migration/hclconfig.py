"""Edit SPIRE HCL configs (server.conf, agent.conf) in place, in the text.

python-hcl2 can read a config but ``hcl2.dumps`` drops comments and
reformats, so operators' files would lose their notes. Here every edit splices
the text at the exact span of a block or attribute, found by a small
tokenizer that knows strings, comments and heredocs; then the new text is
re-parsed with python-hcl2 and checked to hold the intended change and
nothing else.

>>> cfg = HclConfig.parse('''
... # join_token for now
... plugins {
...     NodeAttestor "join_token" {
...         plugin_data {}
...     }
... }
... ''', name="server.conf")
>>> cfg.plugins("NodeAttestor")
{'join_token': {'plugin_data': {}}}
>>> new = cfg.with_plugin("NodeAttestor", "tpm_devid",
...                       'plugin_data {\\n    devid_ca_path = "/x"\\n}')
>>> print(new.text)
<BLANKLINE>
# join_token for now
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
<BLANKLINE>
    NodeAttestor "tpm_devid" {
        plugin_data {
            devid_ca_path = "/x"
        }
    }
}
<BLANKLINE>
>>> sorted(new.plugins("NodeAttestor"))
['join_token', 'tpm_devid']
>>> new.without_plugin("NodeAttestor", "tpm_devid").text == cfg.text
True
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from .errors import ConfigError

__all__ = ["HclConfig"]

# Explicit blocks (so blocks and objects can be told apart), unquoted strings,
# heredocs as their value, no comments.
_READ_OPTIONS = SerializationOptions(
    with_comments=False,
    explicit_blocks=True,
    strip_string_quotes=True,
    preserve_heredocs=False,
)
_BLOCK = "__is_block__"
_DEFAULT_UNIT = "    "


# --------------------------------------------------------------------------
# Tokenizer: just enough HCL to find statements and matching braces.
# --------------------------------------------------------------------------

class _ScanError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass(frozen=True)
class _Tok:
    kind: str   # ident string heredoc lbrace rbrace lbrack rbrack lparen rparen eq nl comment other
    start: int
    end: int
    value: str = ""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
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


def _tokenize(text: str, pos: int = 0, *, in_template: bool = False) -> tuple[list[_Tok], int]:
    """Tokens from ``pos``; inside a ``${...}`` template stop at its closing brace."""
    toks: list[_Tok] = []
    n = len(text)
    depth = 0
    i = pos
    while i < n:
        c = text[i]
        if c in " \t\r\f\ufeff":
            i += 1
        elif c == "\n":
            toks.append(_Tok("nl", i, i + 1))
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            toks.append(_Tok("comment", i, j))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise _ScanError("unterminated /* comment", i)
            toks.append(_Tok("comment", i, j + 2))
            i = j + 2
        elif c == '"':
            j = _scan_string(text, i)
            toks.append(_Tok("string", i, j, _unescape(text[i + 1:j - 1])))
            i = j
        elif text.startswith("<<", i) and (m := _HEREDOC.match(text, i)):
            j = _scan_heredoc(text, m)
            toks.append(_Tok("heredoc", i, j))
            i = j
        elif m := _IDENT.match(text, i):
            toks.append(_Tok("ident", i, m.end(), m.group()))
            i = m.end()
        elif c in _PAIRS:
            if in_template and c == "{":
                depth += 1
            elif in_template and c == "}":
                if depth == 0:
                    return toks, i + 1
                depth -= 1
            toks.append(_Tok(_PAIRS[c], i, i + 1))
            i += 1
        elif c == "=" and not text.startswith(("==", "=>"), i):
            toks.append(_Tok("eq", i, i + 1))
            i += 1
        elif text.startswith(("==", "=>", "!=", "<=", ">=", "&&", "||", "..."), i):
            toks.append(_Tok("other", i, i + 2 + text.startswith("...", i)))
            i = toks[-1].end
        else:
            toks.append(_Tok("other", i, i + 1))
            i += 1
    if in_template:
        raise _ScanError("unterminated ${ in a string", pos)
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
            _, i = _tokenize(text, i + 2, in_template=True)
        else:
            i += 1
    raise _ScanError("unterminated string", start)


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
    raise _ScanError(f"heredoc <<{marker} is never closed", m.start())


# --------------------------------------------------------------------------
# Structure: bodies made of attributes and blocks, with their text spans.
# --------------------------------------------------------------------------

@dataclass
class _Attr:
    name: str
    start: int        # first char of the name
    eq: int           # offset of '='
    value_start: int
    value_end: int    # exclusive


@dataclass
class _Block:
    type: str
    labels: list[str]
    start: int        # first char of the type
    lbrace: int       # offset of '{'
    rbrace: int       # offset of '}'
    items: list[_Attr | _Block] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.rbrace + 1

    @property
    def attrs(self) -> list[_Attr]:
        return [x for x in self.items if isinstance(x, _Attr)]

    @property
    def blocks(self) -> list[_Block]:
        return [x for x in self.items if isinstance(x, _Block)]


_OPEN = {"lbrace", "lbrack", "lparen"}
_CLOSE = {"rbrace", "rbrack", "rparen"}


def _parse_body(toks: list[_Tok], i: int, *, nested: bool) -> tuple[list[_Attr | _Block], int]:
    """Items of a body from token ``i``; returns (items, index of closing rbrace or len)."""
    items: list[_Attr | _Block] = []
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind in ("nl", "comment"):
            i += 1
            continue
        if t.kind == "rbrace":
            if nested:
                return items, i
            raise _ScanError("unexpected '}'", t.start)
        if t.kind != "ident":
            raise _ScanError(f"unexpected {t.kind}", t.start)
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
                raise _ScanError(f"attribute {t.value} has no value", t.start)
            items.append(_Attr(t.value, t.start, toks[j].start, vstart, vend))
            i = k
            continue
        labels: list[str] = []
        while j < n and toks[j].kind in ("string", "ident"):
            labels.append(toks[j].value)
            j = _skip_comments(toks, j + 1)
        if j < n and toks[j].kind == "lbrace":
            body, close = _parse_body(toks, j + 1, nested=True)
            if close >= n:
                raise _ScanError(f"block {t.value} is never closed", toks[j].start)
            items.append(_Block(t.value, labels, t.start, toks[j].start, toks[close].start, body))
            i = close + 1
            continue
        raise _ScanError(f"cannot read the statement starting with {t.value!r}", t.start)
    if nested:
        return items, n
    return items, n


def _skip_comments(toks: list[_Tok], i: int) -> int:
    while i < len(toks) and toks[i].kind == "comment":
        i += 1
    return i


# --------------------------------------------------------------------------
# python-hcl2 output -> plain Python
# --------------------------------------------------------------------------

def _is_block(v: Any) -> bool:
    return isinstance(v, dict) and v.get(_BLOCK) is True


def _is_labelled(v: Any) -> bool:
    if not (isinstance(v, dict) and len(v) == 1):
        return False
    inner = next(iter(v.values()))
    return _is_block(inner) or _is_labelled(inner)


def _is_block_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_block(x) or _is_labelled(x) for x in v)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: (_merge_blocks(x) if _is_block_list(x) else _plain(x))
                for k, x in v.items() if k != _BLOCK}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _merge_blocks(blocks: list[Any]) -> Any:
    """One block -> its dict; repeated blocks -> a list; labels -> dict keys."""
    if all(_is_block(b) for b in blocks):
        bodies = [_plain(b) for b in blocks]
        return bodies[0] if len(bodies) == 1 else bodies
    if all(_is_labelled(b) for b in blocks):
        by_label: dict[str, list[Any]] = {}
        for b in blocks:
            (label, inner), = b.items()
            by_label.setdefault(label, []).append(inner)
        return {label: _merge_blocks(inners) for label, inners in by_label.items()}
    return [_plain(b) for b in blocks]


# --------------------------------------------------------------------------
# Rendering values
# --------------------------------------------------------------------------

def _hcl_string(s: str) -> str:
    if "${" in s or "%{" in s:
        # python-hcl2 reads these as templates, SPIRE (HCL v1) as literal text.
        raise ConfigError(f"cannot write the string {s!r}", expected="no '${' or '%{' in a config string",
                          found=s, remedy="pass the value without template markers")
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def _hcl_value(v: Any) -> str:
    """``v`` as HCL source.

    >>> [_hcl_value(x) for x in ("a\\"b", 3, True, 1.5, ["x", 2])]
    ['"a\\\\"b"', '3', 'true', '1.5', '["x", 2]']
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TypeError(f"HCL has no {v!r}")
        return repr(v)
    if isinstance(v, str):
        return _hcl_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_hcl_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as an HCL setting value")


def _same_value(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(found, (int, float)) and not isinstance(found, bool):
        return math.isclose(found, wanted)
    if isinstance(wanted, (list, tuple)):
        return isinstance(found, list) and len(found) == len(wanted) and all(
            _same_value(f, w) for f, w in zip(found, wanted))
    return type(found) is type(wanted) and found == wanted


# --------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------

class HclConfig:
    """One SPIRE HCL file: its exact text, and the parsed view of it.

    Instances are immutable: every ``with_*``/``without_*`` returns a new one.

    >>> cfg = HclConfig.parse('agent {\\n    trust_domain = "example.org"\\n}\\n')
    >>> cfg.section("agent")
    {'trust_domain': 'example.org'}
    >>> print(cfg.with_setting("agent", "join_token", "abc").text, end="")
    agent {
        trust_domain = "example.org"
        join_token = "abc"
    }
    """

    def __init__(self, text: str, name: str, raw: dict[str, Any]) -> None:
        self._text = text
        self.name = name
        self._raw = raw
        self._items_cache: list[_Attr | _Block] | None = None
        self._toks_cache: list[_Tok] | None = None

    # ---- construction -------------------------------------------------

    @classmethod
    def parse(cls, text: str, name: str = "agent.conf") -> HclConfig:
        """Parse ``text``; raise ConfigError naming ``name`` if it is not valid HCL."""
        try:
            raw = hcl2.loads(text, serialization_options=_READ_OPTIONS)
        except Exception as exc:  # lark errors, and the transformer's ValueErrors
            line, col = getattr(exc, "line", None), getattr(exc, "column", None)
            where = f"line {line}, column {col}" if isinstance(line, int) and line > 0 else "position unknown"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{name} does not parse as HCL", expected="valid HCL",
                              found=f"{name}: {where}: {first}",
                              remedy=f"fix the syntax of {name} at {where}") from exc
        return cls(text, name, raw)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HclConfig:
        """Read and parse the file at ``path`` (exact bytes kept, CRLF included)."""
        p = Path(path)
        try:
            with open(p, encoding="utf-8", newline="") as f:
                text = f.read()
        except FileNotFoundError as exc:
            raise ConfigError(f"{p} does not exist", expected="a SPIRE config file", found="no such file",
                              remedy="check the path in the target description") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p} cannot be read", expected="a readable UTF-8 file", found=str(exc),
                              remedy="check the file's permissions and encoding") from exc
        return cls.parse(text, name=str(p))

    # ---- views ----------------------------------------------------------

    @property
    def text(self) -> str:
        """The exact text of the file."""
        return self._text

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the text (UTF-8)."""
        return hashlib.sha256(self._text.encode("utf-8")).hexdigest()

    @property
    def data(self) -> dict[str, Any]:
        """Plain view: unquoted strings, a block as a dict (a repeated one as a list),
        block labels as keys.

        >>> HclConfig.parse('plugins {\\n  KeyManager "disk" {\\n    plugin_data {\\n'
        ...                 '      directory = "/d"\\n    }\\n  }\\n}\\n').data
        {'plugins': {'KeyManager': {'disk': {'plugin_data': {'directory': '/d'}}}}}
        """
        return _plain(self._raw)

    def plugins(self, kind: str) -> dict[str, dict[str, Any]]:
        """Plugins of one kind across all ``plugins`` blocks, by name.

        >>> HclConfig.parse('plugins {\\n  NodeAttestor "join_token" {\\n    plugin_data {}\\n  }\\n}\\n'
        ...                 ).plugins("NodeAttestor")
        {'join_token': {'plugin_data': {}}}
        """
        out: dict[str, dict[str, Any]] = {}
        for block in self._raw.get("plugins", []):
            for entry in block.get(kind, []) if _is_block(block) else []:
                if not _is_labelled(entry):
                    raise ConfigError(f"{self.name}: a {kind} plugin has no name",
                                      expected=f'{kind} "<name>" {{ ... }}', found=str(_plain(entry)),
                                      remedy="give every plugin block its name")
                (name, body), = entry.items()
                if name in out:
                    raise ConfigError(f'{self.name}: {kind} "{name}" is declared twice',
                                      expected=f'one {kind} "{name}" block', found="two",
                                      remedy="remove the duplicate block")
                out[name] = _plain(body)
        return out

    def section(self, name: str) -> dict[str, Any]:
        """The top-level ``name { ... }`` block (``server``, ``agent``, ...).

        >>> HclConfig.parse('server {\\n  bind_port = 8081\\n}\\n', "server.conf").section("server")
        {'bind_port': 8081}
        """
        blocks = [b for b in self._raw.get(name, []) if _is_block(b)] if isinstance(
            self._raw.get(name), list) else []
        if len(blocks) != 1:
            raise ConfigError(f"{self.name}: {'no' if not blocks else 'more than one'} {name} section",
                              expected=f"exactly one top-level `{name} {{ ... }}` block",
                              found=f"{len(blocks)}", remedy=f"keep a single {name} block in {self.name}")
        return _plain(blocks[0])

    def diff(self, other: HclConfig, path_label: str, *, redact_secrets: bool = True) -> str:
        """Unified diff from this text to ``other``'s ('' when equal).

        Join tokens and TPM passwords are redacted unless ``redact_secrets=False``.
        """
        lines = []
        for line in difflib.unified_diff(self._text.splitlines(keepends=True),
                                         other.text.splitlines(keepends=True),
                                         fromfile=f"{path_label} (current)",
                                         tofile=f"{path_label} (new)"):
            lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        out = "".join(lines)
        if redact_secrets:
            from .redact import redact
            out = redact(out)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HclConfig) and other.text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __repr__(self) -> str:
        return f"HclConfig(name={self.name!r}, sha256={self.sha256[:12]})"

    # ---- edits ------------------------------------------------------------

    def with_plugin(self, kind: str, name: str, body: str, *, replacing: str | None = None) -> HclConfig:
        """Add ``kind "name" { body }`` at the end of the plugins block, or replace
        the existing block of that kind and name (its whole span).

        ``replacing="join_token"`` instead puts the new block at the place of the
        ``kind "join_token"`` block (which must exist, unless ``kind "name"``
        already does: then it is replaced and ``replacing`` must be gone).
        ``body`` is HCL text; it is re-indented to the file's style.
        """
        _check_name(kind, name)
        try:
            wanted = _plain(hcl2.loads(body, serialization_options=_READ_OPTIONS))
        except Exception as exc:
            raise ConfigError(f'body of {kind} "{name}" is not valid HCL', expected="an HCL body",
                              found=str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                              remedy="fix the plugin body") from exc
        plugins_blocks = self._plugins_blocks()
        existing = self._find_plugin(kind, name)
        old = self._find_plugin(kind, replacing) if replacing and replacing != name else None
        text = self._text
        if existing is not None:
            parent = existing[0]
            target = existing[1]
        elif old is not None:
            parent, target = old
        else:
            target = None
            if replacing and replacing != name:
                raise ConfigError(f'{self.name}: no {kind} "{replacing}" to replace',
                                  expected=f'a {kind} "{replacing}" block', found="none",
                                  remedy=f"check the phase of {self.name}")
            if not plugins_blocks:
                raise ConfigError(f"{self.name} has no plugins block",
                                  expected="a top-level `plugins { ... }` block", found="none",
                                  remedy="check that this is a SPIRE config file")
            parent = plugins_blocks[-1]
        unit = self._unit(parent)
        if target is not None:
            indent = _indent_at(text, target.start) if _starts_line(text, target.start) else \
                _indent_at(text, parent.start) + unit
            rendered = _render_block(kind, name, body, indent, unit, self._nl)
            text = text[:target.start] + rendered + text[target.end:]
        else:
            text = self._insert_block(parent, kind, name, body, unit)
        new = self._derive(text, f'{kind} "{name}"')
        if existing is not None and old is not None:
            new = new.without_plugin(kind, replacing)  # type: ignore[arg-type]
        # Defensive: the new block reads back as the body, the rest is unchanged.
        expect_plugins, expect_rest = self._normalized()
        if replacing and replacing != name:
            expect_plugins.pop((kind, replacing), None)
        expect_plugins[(kind, name)] = wanted
        got_plugins, got_rest = new._normalized()
        if got_plugins != expect_plugins or got_rest != expect_rest:
            raise ConfigError(f'{self.name}: adding {kind} "{name}" did not give the intended config',
                              expected=f'{kind} "{name}" = {wanted}, everything else unchanged',
                              found=_describe_change(expect_plugins, got_plugins, expect_rest, got_rest),
                              remedy="report this: the file has a layout the editor does not handle")
        return new

    def without_plugin(self, kind: str, name: str) -> HclConfig:
        """Remove the ``kind "name"`` block (whole lines; comments above it stay).

        Removing a plugin that is not there returns an equal config.
        """
        found = self._find_plugin(kind, name)
        if found is None:
            return self
        parent, block = found
        text = _remove_span(self._text, self._toks, block.start, block.end, parent, collapse_blank=True)
        new = self._derive(text, f'removal of {kind} "{name}"')
        expect_plugins, expect_rest = self._normalized()
        expect_plugins.pop((kind, name))
        got_plugins, got_rest = new._normalized()
        if got_plugins != expect_plugins or got_rest != expect_rest:
            raise ConfigError(f'{self.name}: removing {kind} "{name}" did not give the intended config',
                              expected=f'no {kind} "{name}", everything else unchanged',
                              found=_describe_change(expect_plugins, got_plugins, expect_rest, got_rest),
                              remedy="report this: the file has a layout the editor does not handle")
        return new

    def with_setting(self, section: str, key: str, value: str | int | float | bool | list[Any]) -> HclConfig:
        """Set ``key = value`` in the top-level ``section`` block: the value is replaced
        in place if the key is there, else a line is added after the last attribute.
        """
        _check_ident(key)
        rendered = _hcl_value(value)
        block = self._section_block(section)
        text = self._text
        matches = [a for a in block.attrs if a.name == key]
        if len(matches) > 1:
            raise ConfigError(f"{self.name}: {section}.{key} is set more than once",
                              expected="one assignment", found=str(len(matches)),
                              remedy="remove the duplicates")
        if matches:
            a = matches[0]
            text = text[:a.value_start] + rendered + text[a.value_end:]
        else:
            text = self._insert_attr(block, key, rendered)
        new = self._derive(text, f"{section}.{key}")
        # Defensive: the key reads back as the value, the rest is unchanged.
        before_p, before_r = self._normalized()
        after_p, after_r = new._normalized()
        got_sec = after_r.get(section)
        got_value = got_sec.get(key, _MISSING) if isinstance(got_sec, dict) else _MISSING
        same_rest = (isinstance(got_sec, dict)
                     and {k: v for k, v in got_sec.items() if k != key}
                     == {k: v for k, v in before_r[section].items() if k != key}
                     and {k: v for k, v in after_r.items() if k != section}
                     == {k: v for k, v in before_r.items() if k != section}
                     and after_p == before_p)
        if not (_same_value(got_value, value) and same_rest):
            raise ConfigError(f"{self.name}: setting {section}.{key} did not give the intended config",
                              expected=f"{section}.{key} = {rendered}, everything else unchanged",
                              found=f"{section}.{key} = {got_value!r}" if got_value is not _MISSING
                              else f"{section}.{key} absent",
                              remedy="report this: the file has a layout the editor does not handle")
        return new

    def without_setting(self, section: str, key: str) -> HclConfig:
        """Remove ``key`` from the top-level ``section`` block (its whole lines,
        with a comment on the same line). Absent key: returns an equal config.
        """
        block = self._section_block(section)
        matches = [a for a in block.attrs if a.name == key]
        if not matches:
            return self
        text = self._text
        for a in reversed(matches):
            text = _remove_span(text, _tokenize(text)[0], a.start, a.value_end, block, collapse_blank=False)
        new = self._derive(text, f"removal of {section}.{key}")
        before, after = self._normalized(), new._normalized()
        exp = dict(before[1])
        exp[section] = {k: v for k, v in exp[section].items() if k != key}
        if after[0] != before[0] or after[1] != exp:
            raise ConfigError(f"{self.name}: removing {section}.{key} did not give the intended config",
                              expected=f"no {section}.{key}, everything else unchanged",
                              found=f"{section} = {after[1].get(section)!r}",
                              remedy="report this: the file has a layout the editor does not handle")
        return new

    # ---- internals ----------------------------------------------------------

    @property
    def _nl(self) -> str:
        return "\r\n" if "\r\n" in self._text else "\n"

    @property
    def _toks(self) -> list[_Tok]:
        if self._toks_cache is None:
            try:
                self._toks_cache = _tokenize(self._text)[0]
            except _ScanError as exc:
                self._layout_error(exc)
        return self._toks_cache  # type: ignore[return-value]

    def _layout_error(self, exc: _ScanError) -> None:
        line = self._text.count("\n", 0, exc.pos) + 1
        raise ConfigError(f"{self.name}: the editor cannot read the file's layout",
                          expected="HCL the editor's tokenizer understands",
                          found=f"line {line}: {exc}",
                          remedy="report this, and edit the file by hand meanwhile") from exc

    @property
    def _items(self) -> list[_Attr | _Block]:
        if self._items_cache is None:
            try:
                self._items_cache = _parse_body(self._toks, 0, nested=False)[0]
            except _ScanError as exc:
                self._layout_error(exc)
        return self._items_cache  # type: ignore[return-value]

    def _plugins_blocks(self) -> list[_Block]:
        return [b for b in self._items if isinstance(b, _Block) and b.type == "plugins" and not b.labels]

    def _find_plugin(self, kind: str, name: str | None) -> tuple[_Block, _Block] | None:
        hits = [(p, b) for p in self._plugins_blocks() for b in p.blocks
                if b.type == kind and b.labels == [name]]
        if len(hits) > 1:
            raise ConfigError(f'{self.name}: {kind} "{name}" is declared twice',
                              expected=f'one {kind} "{name}" block', found=f"{len(hits)}",
                              remedy="remove the duplicate block")
        return hits[0] if hits else None

    def _section_block(self, section: str) -> _Block:
        blocks = [b for b in self._items if isinstance(b, _Block) and b.type == section and not b.labels]
        if len(blocks) != 1:
            raise ConfigError(f"{self.name}: {'no' if not blocks else 'more than one'} {section} section",
                              expected=f"exactly one top-level `{section} {{ ... }}` block",
                              found=str(len(blocks)), remedy=f"keep a single {section} block in {self.name}")
        return blocks[0]

    def _unit(self, parent: _Block) -> str:
        """Indentation step of the file, read from a child of ``parent`` if it has one."""
        text = self._text
        p_indent = _indent_at(text, parent.start)
        for child in parent.items:
            if _starts_line(text, child.start):
                c_indent = _indent_at(text, child.start)
                if len(c_indent) > len(p_indent) and c_indent.startswith(p_indent):
                    return c_indent[len(p_indent):]
        for line in text.splitlines():
            ws = line[:len(line) - len(line.lstrip(" \t"))]
            if ws and line.strip():
                return "\t" if ws.startswith("\t") else _DEFAULT_UNIT
        return _DEFAULT_UNIT

    def _insert_block(self, parent: _Block, kind: str, name: str, body: str, unit: str) -> str:
        text, nl = self._text, self._nl
        p_indent = _indent_at(text, parent.start)
        siblings = [c for c in parent.items if _starts_line(text, c.start)]
        indent = _indent_at(text, siblings[-1].start) if siblings else p_indent + unit
        rendered = indent + _render_block(kind, name, body, indent, unit, nl)
        rb = parent.rbrace
        ls = _line_start(text, rb)
        if not text[ls:rb].strip():
            # Closing brace on its own line: insert whole lines before it.
            prev = text[_line_start(text, max(ls - 1, 0)):ls].strip() if ls > 0 else ""
            sep = nl if parent.items and prev else ""
            return text[:ls] + sep + rendered + nl + text[ls:]
        head = text[:rb].rstrip(" \t")
        return head + nl + rendered + nl + p_indent + text[rb:]

    def _insert_attr(self, block: _Block, key: str, rendered: str) -> str:
        text, nl = self._text, self._nl
        unit = self._unit(block)
        attrs = block.attrs
        if attrs:
            last = attrs[-1]
            indent = _indent_at(text, last.start) if _starts_line(text, last.start) else \
                _indent_at(text, block.start) + unit
            eq_col = last.eq - last.start
            name = key.ljust(eq_col) if eq_col > len(last.name) + 1 and eq_col >= len(key) + 1 else key + " "
            line = f"{indent}{name}= {rendered}"
            le = _line_end(text, last.value_end)
            if block.rbrace < le:   # closing brace on the attribute's line
                return text[:last.value_end] + nl + line + nl + _indent_at(text, block.start) + \
                    text[last.value_end:].lstrip(" \t")
            return text[:le] + nl + line + text[le:]
        children = [c for c in block.items if _starts_line(text, c.start)]
        indent = _indent_at(text, children[0].start) if children else _indent_at(text, block.start) + unit
        line = f"{indent}{key} = {rendered}"
        le = _line_end(text, block.lbrace)
        if le < block.rbrace:
            return text[:le] + nl + line + text[le:]
        return text[:block.lbrace + 1] + nl + line + nl + _indent_at(text, block.start) + \
            text[block.rbrace:]

    def _derive(self, text: str, what: str) -> HclConfig:
        try:
            return HclConfig.parse(text, name=self.name)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}: the edit ({what}) would make the file invalid",
                              expected="valid HCL after the edit", found=exc.found,
                              remedy="report this: the file has a layout the editor does not handle") from exc

    def _normalized(self) -> tuple[dict[tuple[str, str | None], Any], dict[str, Any]]:
        """(plugins by (kind, name), everything outside the plugins blocks)."""
        plugins: dict[tuple[str, str | None], Any] = {}
        for block in self._raw.get("plugins", []) if isinstance(self._raw.get("plugins"), list) else []:
            if not _is_block(block):
                continue
            for kind, entries in block.items():
                if kind == _BLOCK:
                    continue
                if not _is_block_list(entries):
                    plugins[(kind, None)] = _plain(entries)
                    continue
                for e in entries:
                    if _is_labelled(e):
                        (label, inner), = e.items()
                        plugins[(kind, label)] = _plain(inner)
                    else:
                        plugins[(kind, None)] = _plain(e)
        rest = _plain({k: v for k, v in self._raw.items() if k != "plugins"})
        return plugins, rest


_MISSING = object()


def _describe_change(exp_p: dict, got_p: dict, exp_r: dict, got_r: dict) -> str:
    parts = []
    for key in sorted(set(exp_p) | set(got_p), key=str):
        if exp_p.get(key, _MISSING) != got_p.get(key, _MISSING):
            parts.append(f"plugin {key}: {got_p.get(key, '<absent>')!r}")
    for key in sorted(set(exp_r) | set(got_r)):
        if exp_r.get(key, _MISSING) != got_r.get(key, _MISSING):
            parts.append(f"{key}: {got_r.get(key, '<absent>')!r}")
    return "; ".join(parts) or "a difference the editor cannot describe"


def _check_name(kind: str, name: str) -> None:
    _check_ident(kind)
    if not name or any(c in name for c in '"\\\n\r${}'):
        raise ConfigError(f"invalid plugin name {name!r}", expected="a plain plugin name such as tpm_devid",
                          found=repr(name), remedy="pass the plugin's name without quotes")


def _check_ident(word: str) -> None:
    if not _IDENT.fullmatch(word or ""):
        raise ConfigError(f"invalid HCL identifier {word!r}", expected="letters, digits, _ and -",
                          found=repr(word), remedy="pass a plain key or plugin kind")


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------

def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_end(text: str, pos: int) -> int:
    """Offset of the line's end-of-line sequence (``\\r\\n`` or ``\\n``) or len."""
    j = text.find("\n", pos)
    if j < 0:
        return len(text)
    return j - 1 if j > 0 and text[j - 1] == "\r" and j - 1 >= pos else j


def _indent_at(text: str, pos: int) -> str:
    ls = _line_start(text, pos)
    line = text[ls:pos]
    return line[:len(line) - len(line.lstrip(" \t"))]


def _starts_line(text: str, pos: int) -> bool:
    return not text[_line_start(text, pos):pos].strip()


def _eol_len(text: str, pos: int) -> int:
    if text.startswith("\r\n", pos):
        return 2
    return 1 if text.startswith("\n", pos) else 0


def _remove_span(text: str, toks: list[_Tok], start: int, end: int, parent: _Block,
                 *, collapse_blank: bool) -> str:
    """Remove text[start:end]; whole lines when the span owns its lines (a comment
    after it on its last line goes too)."""
    ls = _line_start(text, start)
    le = _line_end(text, end)
    trailing = [t for t in toks if end <= t.start < le]
    if _starts_line(text, start) and all(t.kind == "comment" for t in trailing):
        cut_end = le + _eol_len(text, le)
        cut_start = ls
        if collapse_blank and ls > 0:
            prev_ls = _line_start(text, ls - 1)
            next_le = _line_end(text, cut_end)
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


def _heredoc_lines(body: str) -> set[int]:
    """0-based indexes of the lines inside heredocs (content and closing marker)."""
    try:
        toks = _tokenize(body)[0]
    except _ScanError:
        return set()
    lines: set[int] = set()
    for t in toks:
        if t.kind == "heredoc":
            first = body.count("\n", 0, t.start) + 1
            last = body.count("\n", 0, t.end)
            lines.update(range(first, last + 1))
    return lines


def _render_block(kind: str, name: str, body: str, indent: str, unit: str, nl: str) -> str:
    """``kind "name" {`` + body re-indented one step below ``indent`` + ``}``.

    The first line carries no indent (the caller places it).

    >>> print(_render_block("NodeAttestor", "tpm_devid", 'plugin_data {\\n  a = "b"\\n}', "  ", "  ", "\\n"))
    NodeAttestor "tpm_devid" {
        plugin_data {
          a = "b"
        }
      }
    """
    lines = body.replace("\r\n", "\n").strip("\n").split("\n") if body.strip() else []
    keep = _heredoc_lines("\n".join(lines))
    widths = [len(l.expandtabs(4)) - len(l.expandtabs(4).lstrip()) for l in lines]
    live = [w for k, (l, w) in enumerate(zip(lines, widths)) if l.strip() and k not in keep]
    base = min(live) if live else 0
    steps = sorted({w - base for w in live if w > base})
    body_unit = steps[0] if steps else 1
    out = []
    for k, (line, w) in enumerate(zip(lines, widths)):
        if k in keep:
            out.append(line)
        elif not line.strip():
            out.append("")
        else:
            level, rem = divmod(w - base, body_unit)
            out.append(indent + unit + unit * level + " " * rem + line.strip())
    header = f'{kind} "{name}" {{'
    return nl.join([header, *out, indent + "}"])
