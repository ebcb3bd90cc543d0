"""Values and blocks rendered as HCL source."""

from __future__ import annotations

import math
from typing import Any

from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig.tokens import IDENT, ScanError, tokenize

DEFAULT_UNIT = "    "


def quote(s: str) -> str:
    """``s`` as an HCL string literal: the one function that quotes every string
    the suite writes into a config, so a value can never end its string.

    ``\\``, ``"`` and control characters are escaped (both python-hcl2 and
    SPIRE's HCL v1 read the escapes back). ``${`` and ``%{`` are refused: SPIRE
    (HCL v1) reads them as literal text, python-hcl2 as a template, and no
    escape (``$${``) means the same to both, so the suite could not prove
    what SPIRE reads.

    >>> print(quote('x" plugin_cmd = "/tmp/evil'))
    "x\\" plugin_cmd = \\"/tmp/evil"
    """
    if "${" in s or "%{" in s:
        raise ConfigError(f"cannot write the string {s!r}", expected="no '${' or '%{' in a config string",
                          found=s, remedy="pass the value without template markers")
    out = []
    for c in s:
        if c in _ESCAPE:
            out.append(_ESCAPE[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


_ESCAPE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def render_body(settings: dict[str, Any], indent: str = DEFAULT_UNIT) -> str:
    """A plugin body as HCL text: a dict becomes a block, anything else ``key = value``
    (every value through :func:`hcl_value`).

    >>> print(render_body({"plugin_cmd": "/p", "plugin_data": {"ca_path": "/ca"}}))
    plugin_cmd = "/p"
    plugin_data {
        ca_path = "/ca"
    }
    >>> render_body({"plugin_data": {}})
    'plugin_data {}'
    """
    lines = []
    for key, value in settings.items():
        check_ident(key)
        if isinstance(value, dict):
            inner = render_body(value, indent)
            if not inner:
                lines.append(f"{key} {{}}")
                continue
            lines += [f"{key} {{", *(indent + ln for ln in inner.split("\n")), "}"]
        else:
            lines.append(f"{key} = {hcl_value(value)}")
    return "\n".join(lines)


def hcl_value(v: Any) -> str:
    """``v`` as HCL source.

    >>> [hcl_value(x) for x in ("a\\"b", 3, True, 1.5, ["x", 2])]
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
        return quote(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(hcl_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as an HCL setting value")


def same_value(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(found, (int, float)) and not isinstance(found, bool):
        return math.isclose(found, wanted)
    if isinstance(wanted, (list, tuple)):
        return isinstance(found, list) and len(found) == len(wanted) and all(
            same_value(f, w) for f, w in zip(found, wanted))
    return type(found) is type(wanted) and found == wanted


def check_name(kind: str, name: str) -> None:
    check_ident(kind)
    if not name or any(c in name for c in '"\\\n\r${}'):
        raise ConfigError(f"invalid plugin name {name!r}", expected="a plain plugin name such as tpm_devid",
                          found=repr(name), remedy="pass the plugin's name without quotes")


def check_ident(word: str) -> None:
    if not IDENT.fullmatch(word or ""):
        raise ConfigError(f"invalid HCL identifier {word!r}", expected="letters, digits, _ and -",
                          found=repr(word), remedy="pass a plain key or plugin kind")


def _heredoc_lines(body: str) -> set[int]:
    """0-based indexes of the lines inside heredocs (content and closing marker)."""
    try:
        toks = tokenize(body)[0]
    except ScanError:
        return set()
    lines: set[int] = set()
    for t in toks:
        if t.kind == "heredoc":
            first = body.count("\n", 0, t.start) + 1
            last = body.count("\n", 0, t.end)
            lines.update(range(first, last + 1))
    return lines


def render_block(kind: str, name: str, body: str, indent: str, unit: str, nl: str) -> str:
    """``kind "name" {`` + body re-indented one step below ``indent`` + ``}``.

    The first line carries no indent (the caller places it).

    >>> print(render_block("NodeAttestor", "tpm_devid", 'plugin_data {\\n  a = "b"\\n}', "  ", "  ", "\\n"))
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
