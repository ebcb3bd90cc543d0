"""What every SPIRE config form shares (HCL or JSON): the exact text, its hash,
a redacted diff, reading the file, and the check that an edit changed what it
meant to and nothing else."""

from __future__ import annotations

import difflib
import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, TypeVar

from spire_migration.errors import ConfigError

C = TypeVar("C", bound="SpireConfig")
#: Plugins by (kind, name), and everything outside the plugins.
Normalized = tuple[dict[tuple[str, "str | None"], Any], dict[str, Any]]
MISSING = object()
REPORT = "report this: the file has a layout the editor does not handle"


def read_text(path: str | os.PathLike[str]) -> str:
    """The file's exact text (CRLF kept), or a ConfigError naming it."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"{p} does not exist", expected="a SPIRE config file", found="no such file",
                          remedy="check the path in the target description") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} cannot be read", expected="a readable UTF-8 file", found=str(exc),
                          remedy="check the file's permissions and encoding") from exc


class SpireConfig(ABC):
    """One SPIRE config file, immutable: every ``with_*``/``without_*`` returns a new one.

    The views (``plugins``, ``section``) read the file the way SPIRE does.
    """

    format = "?"

    def __init__(self, text: str, name: str) -> None:
        self._text = text
        self.name = name

    @classmethod
    @abstractmethod
    def parse(cls: type[C], text: str, name: str = "agent.conf") -> C:
        """Parse ``text``; raise ConfigError naming ``name`` if it does not parse."""

    @classmethod
    def load(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Read and parse the file at ``path`` (exact bytes kept, CRLF included)."""
        return cls.parse(read_text(path), name=str(Path(path)))

    @property
    def text(self) -> str:
        """The exact text of the file."""
        return self._text

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the text (UTF-8)."""
        return hashlib.sha256(self._text.encode("utf-8")).hexdigest()

    @property
    @abstractmethod
    def data(self) -> dict[str, Any]:
        """Plain view of the whole file."""

    @abstractmethod
    def plugins(self, kind: str) -> dict[str, dict[str, Any]]:
        """The plugins of one kind SPIRE loads, by name."""

    @abstractmethod
    def section(self, name: str) -> dict[str, Any]:
        """The top-level ``server``/``agent``/... settings."""

    @abstractmethod
    def with_plugin(self: C, kind: str, name: str, body: str, *, replacing: str | None = None) -> C:
        """Add (or replace) ``kind "name"`` with ``body`` (HCL text)."""

    @abstractmethod
    def without_plugin(self: C, kind: str, name: str) -> C:
        """Remove ``kind "name"`` (absent: an equal config)."""

    @abstractmethod
    def with_setting(self: C, section: str, key: str, value: Any) -> C:
        """Set ``section.key = value``."""

    @abstractmethod
    def without_setting(self: C, section: str, key: str) -> C:
        """Remove ``section.key`` (absent: an equal config)."""

    def plugins_block_lines(self) -> list[int]:
        """Line numbers of the top-level plugins blocks ([] when the form has one at most)."""
        return []

    @abstractmethod
    def _normalized(self) -> Normalized:
        """(plugins by (kind, name), everything outside the plugins)."""

    def diff(self, other: SpireConfig, path_label: str, *, redact_secrets: bool = True) -> str:
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
            from spire_migration.redact import redact
            out = redact(out)
        return out

    def _check_plugins_edit(self, new: SpireConfig, what: str, expected: str,
                            drop: tuple[str, str | None] | None = None,
                            put: tuple[tuple[str, str], Any] | None = None) -> None:
        """Defensive: ``new`` differs from this config by exactly ``drop``/``put``."""
        expect_plugins, expect_rest = self._normalized()
        if drop is not None:
            expect_plugins.pop(drop, None)
        if put is not None:
            expect_plugins[put[0]] = put[1]
        got_plugins, got_rest = new._normalized()
        if got_plugins != expect_plugins or got_rest != expect_rest:
            raise ConfigError(f"{self.name}: {what} did not give the intended config", expected=expected,
                              found=describe_change(expect_plugins, got_plugins, expect_rest, got_rest),
                              remedy=REPORT)

    def _check_setting_edit(self, new: SpireConfig, section: str, key: str, value: Any = MISSING) -> None:
        """Defensive: ``new`` has ``section.key`` = ``value`` (or no such key), the rest unchanged."""
        from spire_migration.config.hclconfig.render import same_value
        before_p, before_r = self._normalized()
        after_p, after_r = new._normalized()
        got_sec = after_r.get(section)
        got = got_sec.get(key, MISSING) if isinstance(got_sec, dict) else MISSING
        same_rest = (isinstance(got_sec, dict)
                     and {k: v for k, v in got_sec.items() if k != key}
                     == {k: v for k, v in before_r[section].items() if k != key}
                     and {k: v for k, v in after_r.items() if k != section}
                     == {k: v for k, v in before_r.items() if k != section}
                     and after_p == before_p)
        ok = got is MISSING if value is MISSING else same_value(got, value)
        if not (ok and same_rest):
            verb = "removing" if value is MISSING else "setting"
            raise ConfigError(f"{self.name}: {verb} {section}.{key} did not give the intended config",
                              expected=f"no {section}.{key}, everything else unchanged" if value is MISSING
                              else f"{section}.{key} = {value!r}, everything else unchanged",
                              found=f"{section}.{key} = {got!r}" if got is not MISSING
                              else f"{section} = {got_sec!r}", remedy=REPORT)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.text == self._text  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sha256={self.sha256[:12]})"


def describe_change(exp_p: dict, got_p: dict, exp_r: dict, got_r: dict) -> str:
    """What differs between the expected and the found normalized configs."""
    parts = []
    for key in sorted(set(exp_p) | set(got_p), key=str):
        if exp_p.get(key, MISSING) != got_p.get(key, MISSING):
            parts.append(f"plugin {key}: {got_p.get(key, '<absent>')!r}")
    for key in sorted(set(exp_r) | set(got_r)):
        if exp_r.get(key, MISSING) != got_r.get(key, MISSING):
            parts.append(f"{key}: {got_r.get(key, '<absent>')!r}")
    return "; ".join(parts) or "a difference the editor cannot describe"
