"""SPIRE configs in their JSON form (HCL v1 reads JSON; the helm chart renders
server.conf and agent.conf that way), with the same API as :class:`HclConfig`.

Layout (the one SPIRE's HCL v1 decoder gives the same meaning as the HCL file)::

    {"server": {...}, "plugins": {"NodeAttestor": {"join_token": {"plugin_data": {}}}}}

Edits keep every key's order and every other value. The text is written again
with the file's own indentation (read from the file; one line if it had none):
a file written that way (``json.dumps``/Go's ``MarshalIndent`` style) keeps
its formatting exactly; another layout is re-indented (the reported diff shows
it). ``plugin_data`` given as HCL text (the attestor bodies) becomes JSON objects.

>>> cfg = JsonConfig.parse('{\\n  "agent": {"trust_domain": "example.org"},\\n'
...                        '  "plugins": {"NodeAttestor": {"join_token": {"plugin_data": {}}}}\\n}\\n')
>>> cfg.plugins("NodeAttestor")
{'join_token': {'plugin_data': {}}}
>>> new = cfg.with_plugin("NodeAttestor", "tpm_devid", 'plugin_data {\\n  devid_cert_path = "/c"\\n}',
...                       replacing="join_token")
>>> new.plugins("NodeAttestor")
{'tpm_devid': {'plugin_data': {'devid_cert_path': '/c'}}}
"""

from __future__ import annotations

import copy
import json
from typing import Any

from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig.base import Normalized, SpireConfig
from spire_migration.config.hclconfig.plain import body_value
from spire_migration.config.hclconfig.render import check_ident, check_name


def looks_like_json(text: str) -> bool:
    """True when the text is the JSON form (an HCL file cannot start with ``{``)."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


class JsonConfig(SpireConfig):
    """One SPIRE config in JSON form: its exact text and the parsed document."""

    format = "json"

    def __init__(self, text: str, name: str, doc: dict[str, Any]) -> None:
        super().__init__(text, name)
        self._doc = doc

    @classmethod
    def parse(cls, text: str, name: str = "agent.conf") -> JsonConfig:
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise ConfigError(f"{name} does not parse as JSON", expected="the JSON form of a SPIRE config",
                              found=f"{name}: {where}: {exc.msg}",
                              remedy=f"fix the syntax of {name} at {where}") from exc
        except _Duplicate as exc:
            raise ConfigError(f"{name}: key {exc} appears twice in one object",
                              expected="each key once (which one SPIRE takes is not defined)", found=str(exc),
                              remedy=f"keep one {exc} in {name}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{name} is not a JSON object", expected="{...} at the top",
                              found=type(doc).__name__, remedy="check that this is a SPIRE config file")
        return cls(text, name, doc)

    # ---- views ----------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        return copy.deepcopy(self._doc)

    def plugins(self, kind: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._kinds().get(kind, {}))

    def section(self, name: str) -> dict[str, Any]:
        value = self._doc.get(name)
        if not isinstance(value, dict):
            raise ConfigError(f"{self.name}: no {name} section", expected=f'a top-level "{name}": {{...}} object',
                              found="none" if value is None else type(value).__name__,
                              remedy=f"keep a single {name} object in {self.name}")
        return copy.deepcopy(value)

    # ---- edits ----------------------------------------------------------------

    def with_plugin(self, kind: str, name: str, body: str, *, replacing: str | None = None) -> JsonConfig:
        """Add ``kind.name`` (last of its kind), replace it in place, or put it at the
        place of ``kind.replacing`` (which must exist unless ``kind.name`` does)."""
        check_name(kind, name)
        wanted = body_value(kind, name, body)
        doc = copy.deepcopy(self._doc)
        plugins = doc.get("plugins")
        if not isinstance(plugins, dict):
            raise ConfigError(f"{self.name} has no plugins object", expected='a top-level "plugins": {...}',
                              found="none", remedy="check that this is a SPIRE config file")
        kinds = plugins.setdefault(kind, {})
        if replacing and replacing != name and name not in kinds:
            if replacing not in kinds:
                raise ConfigError(f'{self.name}: no {kind} "{replacing}" to replace',
                                  expected=f'a {kind} "{replacing}" plugin', found="none",
                                  remedy=f"check the phase of {self.name}")
            plugins[kind] = {(name if k == replacing else k): (wanted if k == replacing else v)
                             for k, v in kinds.items()}
        else:
            kinds[name] = wanted
            if replacing and replacing != name:
                kinds.pop(replacing, None)
        new = self._derive(doc)
        self._check_plugins_edit(new, f'adding {kind} "{name}"', f'{kind} "{name}" = {wanted}, everything '
                                 "else unchanged", drop=(kind, replacing) if replacing and replacing != name
                                 else None, put=((kind, name), wanted))
        return new

    def without_plugin(self, kind: str, name: str) -> JsonConfig:
        """Remove ``kind.name`` (and ``kind`` when it was its last plugin)."""
        if name not in self._kinds().get(kind, {}):
            return self
        doc = copy.deepcopy(self._doc)
        del doc["plugins"][kind][name]
        if not doc["plugins"][kind]:
            del doc["plugins"][kind]
        new = self._derive(doc)
        self._check_plugins_edit(new, f'removing {kind} "{name}"', f'no {kind} "{name}", everything else '
                                 "unchanged", drop=(kind, name))
        return new

    def with_setting(self, section: str, key: str, value: Any) -> JsonConfig:
        check_ident(key)
        self.section(section)
        doc = copy.deepcopy(self._doc)
        doc[section][key] = list(value) if isinstance(value, tuple) else value
        new = self._derive(doc)
        self._check_setting_edit(new, section, key, value)
        return new

    def without_setting(self, section: str, key: str) -> JsonConfig:
        if key not in self.section(section):
            return self
        doc = copy.deepcopy(self._doc)
        del doc[section][key]
        new = self._derive(doc)
        self._check_setting_edit(new, section, key)
        return new

    # ---- internals ------------------------------------------------------------

    def _kinds(self) -> dict[str, dict[str, Any]]:
        plugins = self._doc.get("plugins", {})
        if not isinstance(plugins, dict) or not all(
                isinstance(v, dict) and all(isinstance(b, dict) for b in v.values()) for v in plugins.values()):
            raise ConfigError(f"{self.name}: a plugins layout the suite does not edit",
                              expected='"plugins": {"<Kind>": {"<name>": {...}}}', found=str(plugins)[:200],
                              remedy="write each plugin kind as an object of named plugins")
        return plugins

    def _normalized(self) -> Normalized:
        plugins = {(kind, name): body for kind, named in self._kinds().items() for name, body in named.items()}
        return copy.deepcopy(plugins), {k: copy.deepcopy(v) for k, v in self._doc.items() if k != "plugins"}

    def _derive(self, doc: dict[str, Any]) -> JsonConfig:
        return JsonConfig.parse(_dump_like(self._text, doc), self.name)


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _dump_like(text: str, doc: dict[str, Any]) -> str:
    """``doc`` as JSON in the style of ``text``: its indent unit, line ending and final newline."""
    nl = "\r\n" if "\r\n" in text else "\n"
    indent = None
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            indent = line[:len(line) - len(stripped)]
            break
    out = json.dumps(doc, indent=indent, ensure_ascii=False)
    if nl != "\n":
        out = out.replace("\n", nl)
    return out + (nl if text.endswith(("\n", "\r\n")) else "")
