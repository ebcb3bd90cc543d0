"""The human report as one self-contained HTML page (``--html FILE``), beside the Markdown one.

Same data as :func:`spire_migration.records.report.write_markdown` (the :class:`~spire_migration.records.report.Run`):
per scenario the guide reference, host, status, and every check with its expected, found,
evidence, warnings and remedy; then one row per node, and the run's timeline (each scenario,
step and wait with its start and duration, :mod:`spire_migration.records.timeline`). Inline CSS, no
script, no external resource; every string is redacted, then HTML-escaped.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from pathlib import Path
from typing import Any, Iterable

from spire_migration.fileio import write_file
from spire_migration.redact import redact, redact_obj
from spire_migration.records.report import Run, check_status, guide_id
from spire_migration.records.timeline import Span, timeline_of

_STATUS_CLASS = {"passed": "ok", "passed with warnings": "warn", "failed": "bad", "timed out": "bad",
                 "not_run": "off", "not run": "off", "skipped": "off", "not_applicable": "na",
                 "not applicable": "na", "done": "ok", "running": "off"}


def esc(value: Any) -> str:
    """Redacted, then escaped for HTML text and attribute values."""
    text = value if isinstance(value, str) else json.dumps(redact_obj(value), default=str, sort_keys=True)
    return html.escape(redact(text), quote=True)


def _badge(status: str) -> str:
    label = status.replace("_", " ")
    return f'<span class="badge {_STATUS_CLASS.get(status, "off")}">{esc(label)}</span>'


def _seconds(value: float | None) -> str:
    return "running" if value is None else f"{value:.1f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def scenario_status(run: Run, nodeid: str) -> str:
    status = run.scenarios[nodeid]["status"]
    if status == "passed" and any(getattr(c, "warnings", None) for c in run.checks.get(nodeid, [])):
        return "passed with warnings"
    return status


def _anchor(nodeid: str) -> str:
    return "s-" + hashlib.sha1(nodeid.encode()).hexdigest()[:12]


def _summary(run: Run) -> str:
    counts = run.counts()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started))
    phase = run.facts.get("phase")
    cells = "".join(f'<div class="count {_STATUS_CLASS.get(k, "off")}"><b>{v}</b>{esc(k.replace("_", " "))}</div>'
                    for k, v in counts.items())
    return (f'<header><h1>SPIRE migration report</h1><p>Run started {esc(started)}'
            + (f' · phase of the target node: <b>{esc(phase)}</b>' if phase else "")
            + f' · {len(run.changes)} change(s)</p><div class="counts">{cells}</div></header>')


def _scenario_table(run: Run, durations: dict[str, float | None]) -> str:
    rows = []
    for nodeid, s in run.scenarios.items():
        rows.append(f'<tr class="scenario-row"><td class="ref">{esc(guide_id(s["tags"]))}</td>'
                    f'<td>{esc(s.get("host") or "-")}</td>'
                    f'<td><a href="#{_anchor(nodeid)}">{esc(s.get("title") or s["name"])}</a></td>'
                    f'<td class="status">{_badge(scenario_status(run, nodeid))}</td>'
                    f'<td class="num">{_seconds(durations.get(nodeid)) if nodeid in durations else "-"}</td></tr>')
    return ('<section><h2>Scenarios</h2><table class="scenarios"><thead><tr><th>guide</th><th>host</th>'
            '<th>scenario</th><th>status</th><th>duration</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></section>")


def _nodes_table(run: Run, durations: dict[str, float | None]) -> str:
    """One row per node: per host of the run (fleets, ``--hosts``), else the target's node
    (testinfra's ``local`` host is the node the suite runs on: the target's)."""
    target = run.facts.get("_target")
    default = getattr(target, "node", "") or "local"
    nodes: dict[str, list[str]] = {}
    for nodeid, s in run.scenarios.items():
        host = s.get("host") or default
        nodes.setdefault(default if host == "local" else host, []).append(nodeid)
    rows = []
    for node, ids in nodes.items():
        statuses = [run.scenarios[i]["status"] for i in ids]
        result = "failed" if "failed" in statuses else "passed" if "passed" in statuses else statuses[0]
        counts = {k: statuses.count(k) for k in ("passed", "failed", "not_run", "not_applicable")}
        took = sum(d for i in ids if (d := durations.get(i)) is not None)
        rows.append(f'<tr class="node-row"><td>{esc(node)}</td><td class="status">{_badge(result)}</td>'
                    + "".join(f'<td class="num">{v}</td>' for v in counts.values())
                    + f'<td class="num">{_seconds(took)}</td></tr>')
    facts = {k: v for k, v in run.facts.items() if not k.startswith("_") and k != "summary_path"}
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in facts.items())
    return ('<section><h2>Nodes</h2><table class="nodes"><thead><tr><th>node</th><th>result</th><th>passed</th>'
            '<th>failed</th><th>not run</th><th>not applicable</th><th>duration</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>"
            + (f'<table class="facts"><tbody>{facts_html}</tbody></table>' if facts_html else "") + "</section>")


def _timeline(run: Run, spans: list[Span]) -> str:
    if not spans:
        return '<section><h2>Timeline</h2><p class="muted">No steps were recorded.</p></section>'
    t0 = min([run.started] + [s.start for s in spans])
    end = max(s.start + (s.duration or 0.0) for s in spans)
    total = max(end - t0, 1e-3)
    rows = []
    for s in spans:
        left = 100.0 * (s.start - t0) / total
        width = max(100.0 * (s.duration or 0.0) / total, 0.3)
        rows.append(f'<tr class="tl-row tl-{s.kind}"><td class="num tl-start">+{s.start - t0:.1f} s</td>'
                    f'<td class="num tl-duration">{_seconds(s.duration)}</td>'
                    f'<td class="tl-kind">{esc(s.kind)}</td><td class="tl-name">{esc(s.name)}</td>'
                    f'<td class="tl-status">{_badge(s.status)}</td>'
                    f'<td class="tl-track"><div class="bar {s.kind} {_STATUS_CLASS.get(s.status, "off")}" '
                    f'style="left:{left:.2f}%;width:{min(width, 100.0 - left):.2f}%"></div></td></tr>')
    return (f'<section><h2>Timeline</h2><p class="muted">{_seconds(total)} from the start of the run; '
            'waits (hatched) are the time a step spent polling for a condition.</p>'
            '<table class="timeline"><thead><tr><th>start</th><th>duration</th><th></th><th>what</th>'
            '<th>status</th><th class="tl-track">when</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></section>")


def _evidence(evidence: dict[str, Any]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd><pre>{esc(v)}</pre></dd>" for k, v in evidence.items())
    return f'<dl class="evidence">{items}</dl>'


def _checks(checks: Iterable[Any]) -> str:
    out = []
    for c in checks:
        status = check_status(c)
        parts = [f'<div class="check {_STATUS_CLASS.get(status, "off")}"><h4>{_badge(status)} {esc(c.title)}</h4>',
                 '<table class="kv">', f'<tr><th>expected</th><td class="expected">{esc(c.expected)}</td></tr>',
                 f'<tr><th>found</th><td class="found">{esc(c.found)}</td></tr>']
        for w in getattr(c, "warnings", None) or []:
            parts.append(f'<tr><th>warning</th><td class="warning">{esc(w)}</td></tr>')
        if not c.ok and c.remedy:
            parts.append(f'<tr><th>remedy</th><td class="remedy">{esc(c.remedy)}</td></tr>')
        if c.evidence:
            parts.append(f'<tr><th>evidence</th><td>{_evidence(c.evidence)}</td></tr>')
        parts.append("</table></div>")
        out.append("".join(parts))
    return "".join(out)


def _details(run: Run) -> str:
    out = ["<section><h2>Checks and evidence</h2>"]
    for nodeid, s in run.scenarios.items():
        host = f' <span class="muted">[{esc(s["host"])}]</span>' if s.get("host") else ""
        out.append(f'<article class="scenario" id="{_anchor(nodeid)}">'
                   f'<h3><span class="ref">{esc(guide_id(s["tags"]))}</span>{host} {esc(s.get("title") or s["name"])} '
                   f'{_badge(scenario_status(run, nodeid))}</h3>'
                   f'<p class="tags">{esc(" ".join("@" + t for t in s["tags"]))}</p>')
        if s["reason"]:
            out.append(f'<pre class="reason">{esc(s["reason"])}</pre>')
        out.append(_checks(run.checks.get(nodeid, [])) or '<p class="muted">No checks recorded.</p>')
        out.append("</article>")
    if run.changes:
        out.append('<h2>Changes</h2><ul class="changes">' + "".join(f"<li>{esc(c)}</li>" for c in run.changes) + "</ul>")
    return "".join(out) + "</section>"


_CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--na:#57606a;--off:#8c959f;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
margin:0;padding:24px 32px;max-width:1280px}h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;
border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:0 0 4px}h4{font-size:14px;margin:0 0 6px}
header p{margin:0 0 12px;color:#59636e}.counts{display:flex;gap:10px;flex-wrap:wrap}.count{border:1px solid var(--line);
border-radius:8px;padding:8px 14px;min-width:110px;background:#fff;border-left:5px solid var(--off)}.count b{display:block;
font-size:22px}.count.ok{border-left-color:var(--ok)}.count.bad{border-left-color:var(--bad)}.count.na{border-left-color:var(--na)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);
vertical-align:top}thead th{background:var(--bg);font-weight:600}.num{text-align:right;white-space:nowrap;
font-variant-numeric:tabular-nums}.ref{font-family:ui-monospace,monospace;font-weight:600;margin-right:6px}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff;
background:var(--off);white-space:nowrap}.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.badge.warn{background:var(--warn)}.badge.na{background:var(--na)}.muted{color:#59636e}
table.nodes{width:auto;min-width:60%}table.nodes td,table.nodes th{padding-right:28px}table.facts{margin-top:10px;width:auto}table.facts th{font-weight:500;color:#59636e}
.tl-track{width:38%;position:relative}td.tl-track{background:repeating-linear-gradient(90deg,transparent 0 9.9%,#eaeef2 9.9% 10%)}
.bar{position:absolute;top:6px;height:12px;border-radius:3px;background:var(--off)}.bar.ok{background:var(--ok)}
.bar.bad{background:var(--bad)}.bar.na{background:var(--na)}.bar.warn{background:var(--warn)}
.bar.scenario{opacity:.35;height:16px;top:4px}.bar.wait{background:repeating-linear-gradient(45deg,#bf8700 0 4px,#fff8c5 4px 8px)!important;
height:10px;top:7px}tr.tl-scenario td{font-weight:600;background:#fbfcfd}tr.tl-step .tl-name{padding-left:22px}
tr.tl-wait .tl-name{padding-left:40px;font-style:italic;color:#7d4e00}.tl-kind{color:#59636e;font-size:12px}
article.scenario{border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:12px 0;background:#fff}
.tags{color:#59636e;font-size:12px;margin:0 0 8px;font-family:ui-monospace,monospace}
.check{border-left:4px solid var(--off);padding:6px 10px;margin:8px 0;background:var(--bg);border-radius:0 6px 6px 0}
.check.ok{border-left-color:var(--ok)}.check.bad{border-left-color:var(--bad)}.check.warn{border-left-color:var(--warn)}
table.kv th{width:90px;color:#59636e;font-weight:500}table.kv td,table.kv th{border:0;padding:2px 6px}
td.remedy{color:var(--bad);font-weight:600}td.warning{color:var(--warn)}
pre{margin:0;white-space:pre-wrap;word-break:break-all;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre.reason{background:#fff1f0;border:1px solid #ffcecb;padding:8px;border-radius:6px;margin-bottom:8px}
dl.evidence{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:2px 10px}dl.evidence dt{color:#59636e;
font-family:ui-monospace,monospace;font-size:12px}dl.evidence dd{margin:0}ul.changes{font-family:ui-monospace,monospace;font-size:12px}
"""


def render(run: Run) -> str:
    """The report page of *run* (a string of HTML)."""
    spans = timeline_of(run).spans
    durations = {s.nodeid: s.duration for s in spans if s.kind == "scenario"}
    body = (_summary(run) + _scenario_table(run, durations) + _nodes_table(run, durations)
            + _timeline(run, spans) + _details(run))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>SPIRE migration report</title><style>{_CSS}</style></head><body>{body}</body></html>\n")


def write_html(run: Run, path: Path) -> None:
    """Write the HTML report of *run* to *path* (0600, like the other reports)."""
    write_file(path, render(run), mode=0o600)
