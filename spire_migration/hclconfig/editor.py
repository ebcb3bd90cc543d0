"""The HCL editor: a SPIRE config's exact text, its parsed view, and edits that
splice the text at a block's or attribute's span, each checked by a re-parse."""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path
from typing import Any

import hcl2

from ..errors import ConfigError
from . import render
from .layout import insert_attr, insert_block, unit_of
from .plain import BLOCK, READ_OPTIONS, is_block, is_block_list, is_labelled, plain
from .render import check_ident, check_name, same_value
from .spans import Attr, Block, indent_at, parse_body, remove_span, starts_line
from .tokens import ScanError, Tok, tokenize


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
        self._items_cache: list[Attr | Block] | None = None
        self._toks_cache: list[Tok] | None = None

    # ---- construction -------------------------------------------------

    @classmethod
    def parse(cls, text: str, name: str = "agent.conf") -> HclConfig:
        """Parse ``text``; raise ConfigError naming ``name`` if it is not valid HCL."""
        try:
            raw = hcl2.loads(text, serialization_options=READ_OPTIONS)
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
        return plain(self._raw)

    def plugins(self, kind: str) -> dict[str, dict[str, Any]]:
        """Plugins of one kind across all ``plugins`` blocks, by name.

        >>> HclConfig.parse('plugins {\\n  NodeAttestor "join_token" {\\n    plugin_data {}\\n  }\\n}\\n'
        ...                 ).plugins("NodeAttestor")
        {'join_token': {'plugin_data': {}}}
        """
        out: dict[str, dict[str, Any]] = {}
        for block in self._raw.get("plugins", []):
            for entry in block.get(kind, []) if is_block(block) else []:
                if not is_labelled(entry):
                    raise ConfigError(f"{self.name}: a {kind} plugin has no name",
                                      expected=f'{kind} "<name>" {{ ... }}', found=str(plain(entry)),
                                      remedy="give every plugin block its name")
                (name, body), = entry.items()
                if name in out:
                    raise ConfigError(f'{self.name}: {kind} "{name}" is declared twice',
                                      expected=f'one {kind} "{name}" block', found="two",
                                      remedy="remove the duplicate block")
                out[name] = plain(body)
        return out

    def section(self, name: str) -> dict[str, Any]:
        """The top-level ``name { ... }`` block (``server``, ``agent``, ...).

        >>> HclConfig.parse('server {\\n  bind_port = 8081\\n}\\n', "server.conf").section("server")
        {'bind_port': 8081}
        """
        blocks = [b for b in self._raw.get(name, []) if is_block(b)] if isinstance(
            self._raw.get(name), list) else []
        if len(blocks) != 1:
            raise ConfigError(f"{self.name}: {'no' if not blocks else 'more than one'} {name} section",
                              expected=f"exactly one top-level `{name} {{ ... }}` block",
                              found=f"{len(blocks)}", remedy=f"keep a single {name} block in {self.name}")
        return plain(blocks[0])

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
            from ..redact import redact
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
        check_name(kind, name)
        try:
            wanted = plain(hcl2.loads(body, serialization_options=READ_OPTIONS))
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
        unit = unit_of(self._text, parent)
        if target is not None:
            indent = indent_at(text, target.start) if starts_line(text, target.start) else \
                indent_at(text, parent.start) + unit
            rendered = render.render_block(kind, name, body, indent, unit, self._nl)
            text = text[:target.start] + rendered + text[target.end:]
        else:
            text = insert_block(self._text, self._nl, parent, kind, name, body, unit)
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
        text = remove_span(self._text, self._toks, block.start, block.end, parent, collapse_blank=True)
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
        check_ident(key)
        rendered = render.hcl_value(value)
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
            text = insert_attr(self._text, self._nl, block, key, rendered)
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
        if not (same_value(got_value, value) and same_rest):
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
            text = remove_span(text, tokenize(text)[0], a.start, a.value_end, block, collapse_blank=False)
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
    def _toks(self) -> list[Tok]:
        if self._toks_cache is None:
            try:
                self._toks_cache = tokenize(self._text)[0]
            except ScanError as exc:
                self._layout_error(exc)
        return self._toks_cache  # type: ignore[return-value]

    def _layout_error(self, exc: ScanError) -> None:
        line = self._text.count("\n", 0, exc.pos) + 1
        raise ConfigError(f"{self.name}: the editor cannot read the file's layout",
                          expected="HCL the editor's tokenizer understands",
                          found=f"line {line}: {exc}",
                          remedy="report this, and edit the file by hand meanwhile") from exc

    @property
    def _items(self) -> list[Attr | Block]:
        if self._items_cache is None:
            try:
                self._items_cache = parse_body(self._toks, 0, nested=False)[0]
            except ScanError as exc:
                self._layout_error(exc)
        return self._items_cache  # type: ignore[return-value]

    def _plugins_blocks(self) -> list[Block]:
        return [b for b in self._items if isinstance(b, Block) and b.type == "plugins" and not b.labels]

    def _find_plugin(self, kind: str, name: str | None) -> tuple[Block, Block] | None:
        hits = [(p, b) for p in self._plugins_blocks() for b in p.blocks
                if b.type == kind and b.labels == [name]]
        if len(hits) > 1:
            raise ConfigError(f'{self.name}: {kind} "{name}" is declared twice',
                              expected=f'one {kind} "{name}" block', found=f"{len(hits)}",
                              remedy="remove the duplicate block")
        return hits[0] if hits else None

    def _section_block(self, section: str) -> Block:
        blocks = [b for b in self._items if isinstance(b, Block) and b.type == section and not b.labels]
        if len(blocks) != 1:
            raise ConfigError(f"{self.name}: {'no' if not blocks else 'more than one'} {section} section",
                              expected=f"exactly one top-level `{section} {{ ... }}` block",
                              found=str(len(blocks)), remedy=f"keep a single {section} block in {self.name}")
        return blocks[0]

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
            if not is_block(block):
                continue
            for kind, entries in block.items():
                if kind == BLOCK:
                    continue
                if not is_block_list(entries):
                    plugins[(kind, None)] = plain(entries)
                    continue
                for e in entries:
                    if is_labelled(e):
                        (label, inner), = e.items()
                        plugins[(kind, label)] = plain(inner)
                    else:
                        plugins[(kind, None)] = plain(e)
        rest = plain({k: v for k, v in self._raw.items() if k != "plugins"})
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
