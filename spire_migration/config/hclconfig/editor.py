"""The HCL editor: a SPIRE config's exact text, its parsed view, and edits that
splice the text at a block's or attribute's span, each checked by a re-parse."""

from __future__ import annotations

from typing import Any

import hcl2

from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig import render
from spire_migration.config.hclconfig.base import Normalized, SpireConfig
from spire_migration.config.hclconfig.layout import insert_attr, insert_block, unit_of
from spire_migration.config.hclconfig.plain import BLOCK, READ_OPTIONS, body_value, is_block, is_block_list, is_labelled, plain
from spire_migration.config.hclconfig.render import check_ident, check_name
from spire_migration.config.hclconfig.spans import Attr, Block, indent_at, parse_body, remove_span, starts_line
from spire_migration.config.hclconfig.tokens import ScanError, Tok, tokenize


class HclConfig(SpireConfig):
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

    format = "hcl"

    def __init__(self, text: str, name: str, raw: dict[str, Any]) -> None:
        super().__init__(text, name)
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

    # ---- views ----------------------------------------------------------

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
        """Plugins of one kind, by name, from the first ``plugins`` block: SPIRE
        reads only that one (see :meth:`plugins_block_lines`).

        >>> HclConfig.parse('plugins {\\n  NodeAttestor "join_token" {\\n    plugin_data {}\\n  }\\n}\\n'
        ...                 ).plugins("NodeAttestor")
        {'join_token': {'plugin_data': {}}}
        """
        out: dict[str, dict[str, Any]] = {}
        blocks = [b for b in self._raw.get("plugins", []) if is_block(b)] if isinstance(
            self._raw.get("plugins"), list) else []
        for block in blocks[:1]:
            for entry in block.get(kind, []):
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
        wanted = body_value(kind, name, body)
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
            parent = plugins_blocks[0]   # the one SPIRE reads
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
        self._check_plugins_edit(new, f'adding {kind} "{name}"',
                                 f'{kind} "{name}" = {wanted}, everything else unchanged',
                                 drop=(kind, replacing) if replacing and replacing != name else None,
                                 put=((kind, name), wanted))
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
        self._check_plugins_edit(new, f'removing {kind} "{name}"',
                                 f'no {kind} "{name}", everything else unchanged', drop=(kind, name))
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
        self._check_setting_edit(new, section, key, value)  # reads back as the value, the rest unchanged
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
        self._check_setting_edit(new, section, key)
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

    def plugins_block_lines(self) -> list[int]:
        """Line numbers of the top-level ``plugins`` blocks. SPIRE (HCL v1 decoding
        into one node) loads only the first; the editor edits only that one.

        >>> HclConfig.parse('plugins {\\n}\\nserver {}\\nplugins {\\n}\\n').plugins_block_lines()
        [1, 4]
        """
        return [self._text.count("\n", 0, b.start) + 1 for b in self._plugins_blocks()]

    def _plugins_blocks(self) -> list[Block]:
        return [b for b in self._items if isinstance(b, Block) and b.type == "plugins" and not b.labels]

    def _find_plugin(self, kind: str, name: str | None) -> tuple[Block, Block] | None:
        hits = [(p, b) for p in self._plugins_blocks()[:1] for b in p.blocks
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

    def _normalized(self) -> Normalized:
        """(plugins by (kind, name), everything outside the plugins blocks); a plugin
        of a later (ignored) plugins block is keyed ``plugins#N/kind``."""
        plugins: dict[tuple[str, str | None], Any] = {}
        blocks = self._raw.get("plugins") if isinstance(self._raw.get("plugins"), list) else []
        for n, block in enumerate(b for b in blocks if is_block(b)):
            prefix = f"plugins#{n + 1}/" if n else ""
            for kind, entries in block.items():
                if kind == BLOCK:
                    continue
                key = prefix + kind
                if not is_block_list(entries):
                    plugins[(key, None)] = plain(entries)
                    continue
                for e in entries:
                    if is_labelled(e):
                        (label, inner), = e.items()
                        plugins[(key, label)] = plain(inner)
                    else:
                        plugins[(key, None)] = plain(e)
        rest = plain({k: v for k, v in self._raw.items() if k != "plugins"})
        return plugins, rest
