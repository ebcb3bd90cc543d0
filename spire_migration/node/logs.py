"""SPIRE's log lines (logrus logfmt), parsed, not grepped.

>>> rec = parse_logfmt('time="2026-01-02T03:04:05Z" level=error msg="No identity issued" pid=7 registered=false')
>>> rec["level"], rec["msg"], rec["pid"]
('error', 'No identity issued', '7')
>>> parse_logfmt("not a log line") == {}
True
>>> errors_since(['time="2026-01-02T03:04:05Z" level=error msg=a',
...               'time="2026-01-02T03:04:07Z" level=info msg=b',
...               'time="2026-01-02T03:04:09Z" level=error msg=c'],
...              datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))[0]["msg"]
'c'
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterable

from spire_migration.redact import redact

_PAIR = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
ERROR_LEVELS = ("error", "fatal", "panic")


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs of one logfmt line ({} when the line has no ``level=``)."""
    out: dict[str, str] = {}
    for key, value in _PAIR.findall(line):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key] = value
    return out if "level" in out else {}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def records(lines: Iterable[str]) -> list[dict[str, str]]:
    return [r for r in (parse_logfmt(line) for line in lines) if r]


def errors_since(lines: Iterable[str], since: datetime | None,
                 levels: tuple[str, ...] = ERROR_LEVELS) -> list[dict[str, str]]:
    """Records at an error level whose time is at or after ``since`` (all when None)."""
    found = []
    for rec in records(lines):
        if rec.get("level", "").lower() not in levels:
            continue
        when = parse_time(rec.get("time"))
        if since is not None and (when is None or when < since):
            continue
        found.append(rec)
    return found


def summarize(rec: dict[str, Any]) -> str:
    """One short, redacted line for a report."""
    extra = " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("time", "level", "msg"))
    return redact(f"{rec.get('time', '?')} {rec.get('level')} {rec.get('msg', '')!r} {extra}".strip())
