"""The HTML report (spire_migration/records/html_report.py): same data as the Markdown one, escaped and
redacted, with one row per node and the run's timeline."""

from __future__ import annotations

import re
import stat
from html.parser import HTMLParser

from spire_migration.records import html_report
from spire_migration.records import timeline
from spire_migration.verdict import CheckResult
from spire_migration.records.report import Run

TOKEN = "0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"


class _Text(HTMLParser):
    """The page's text and the URLs it would load (src/href other than in-page anchors)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.loads: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.loads.append(value)

    def handle_data(self, data):
        self.text.append(data)


def _run() -> Run:
    run = Run(started=1_700_000_000.0)
    run.facts["phase"] = "phase3"
    run.facts["agent_before"] = f"spiffe://example.org/spire/agent/join_token/{TOKEN}"
    ok, bad = "tests/x.py::test_step_6", "tests/x.py::test_step_7"
    run.scenarios[ok] = {"name": "test_step_6", "title": "Step 6 - Start <Phase 4>", "status": "passed",
                         "reason": "", "tags": ["guide_step_6", "migrate"], "host": ""}
    run.scenarios[bad] = {"name": "test_step_7", "title": "Step 7 - Verify", "status": "failed",
                          "reason": f"agent ran with -joinToken {TOKEN}", "tags": ["guide_step_7", "migrate"], "host": ""}
    run.checks[ok] = [CheckResult("server healthy", True, "healthy", "healthy <b>ok</b>",
                                  {"pid": 42, "log": "<script>alert(1)</script>"})]
    run.checks[bad] = [CheckResult("agent attested by tpm_devid", False, "tpm_devid",
                                   f"spiffe://example.org/spire/agent/join_token/{TOKEN}", {},
                                   remedy="restart the agent without a join token")]
    tl = timeline.timeline_of(run)
    tl.scenario(ok, "Step 6", 1_700_000_001.0, 1_700_000_001.2, "passed")
    tl.spans.append(timeline.Span("step", "When the Phase 4 server and agent are started", ok,
                                  1_700_000_001.2, 3.0, "passed"))
    tl.spans.append(timeline.Span("wait", "waiting for the server to report healthy", ok,
                                  1_700_000_001.5, 1.4, "done"))
    tl.scenario(ok, "Step 6", 1_700_000_001.0, 1_700_000_004.5, "passed")
    tl.scenario(bad, "Step 7", 1_700_000_004.5, 1_700_000_005.0, "failed")
    return run


def test_everything_is_escaped_and_redacted_and_nothing_is_loaded(tmp_path) -> None:
    out = tmp_path / "r.html"
    html_report.write_html(_run(), out)
    page = out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert TOKEN not in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "healthy &lt;b&gt;ok&lt;/b&gt;" in page and "Start &lt;Phase 4&gt;" in page
    parser = _Text()
    parser.feed(page)
    assert parser.loads == [] and "link" not in parser.tags and "img" not in parser.tags
    assert "default-src 'none'" in page


def test_same_data_as_the_markdown_report() -> None:
    parser = _Text()
    parser.feed(html_report.render(_run()))
    text = re.sub(r"\s+", " ", " ".join(parser.text))
    for expected in ("guide_step_6", "guide_step_7", "server healthy", "expected", "found", "evidence",
                     "restart the agent without a join token", "passed", "failed", "join_token/<redacted:"):
        assert expected in text, expected


def test_timeline_rows_and_one_row_per_node() -> None:
    page = html_report.render(_run())
    rows = re.findall(r'<tr class="tl-row tl-(\w+)">(.*?)</tr>', page)
    assert [kind for kind, _ in rows] == ["scenario", "step", "wait", "scenario"]
    starts = [re.search(r'tl-start">([^<]+)<', r).group(1) for _, r in rows]
    assert starts == ["+1.0 s", "+1.2 s", "+1.5 s", "+4.5 s"]
    assert "3.5 s" in rows[0][1] and "1.4 s" in rows[2][1] and "waiting for the server" in rows[2][1]
    assert page.count('class="node-row"') == 1

    run = _run()
    for i, nodeid in enumerate(run.scenarios):
        run.scenarios[nodeid]["host"] = f"docker://node-{i}"
    assert html_report.render(run).count('class="node-row"') == 2
    run.scenarios[next(iter(run.scenarios))]["host"] = "local"   # testinfra's local host: the target's node
    assert html_report.render(run).count('class="node-row"') == 2
    for nodeid in run.scenarios:
        run.scenarios[nodeid]["host"] = "local"
    assert html_report.render(run).count('class="node-row"') == 1


def test_an_open_step_is_closed_when_its_scenario_ends() -> None:
    tl = timeline.Timeline()
    tl.step_started("n", "Given a step that skips")
    tl.scenario("n", "S", 0.0, 1.0, "not_applicable")
    assert [(s.kind, s.status) for s in tl.spans] == [("scenario", "not_applicable"), ("step", "skipped")]
    assert all(s.duration is not None for s in tl.spans)
