"""The HTML report of a real migration, as a real browser shows it (issue 11, point 5).

A real ``pytest -m migrate`` against the lab writes ``--report`` (Markdown) and ``--html``;
headless Chromium (Debian's ``chromium``, ``scripts/setup.sh --tests``) loads the page from a
file URL with every network request refused by the page's own policy, and the test reads the
DOM Chromium built: every step's status, the evidence of the Markdown report, the timeline rows.
A screenshot is kept next to the report for people to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from spire_migration.records.report import guide_id

pytestmark = [pytest.mark.lab, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None,
                                 reason="needs Debian's chromium (bash scripts/setup.sh --tests)")]


def chromium(*args: str, profile: Path) -> str:
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Dom(HTMLParser):
    """Rows of the rendered DOM: each <tr> with its class and the text of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.text: list[str] = []
        self._cells: list[str] | None = None
        self._cls = ""

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._cls, self._cells = dict(attrs).get("class") or "", []
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self._cells is not None:
            self.rows.append((self._cls, [re.sub(r"\s+", " ", c).strip() for c in self._cells]))
            self._cells = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cells:
            self._cells[-1] += data

    def of(self, cls: str) -> list[list[str]]:
        return [cells for c, cells in self.rows if cls in c.split()]


def rendered(page: Path, profile: Path) -> tuple[Dom, str]:
    """The DOM Chromium built from *page*, and its text (whitespace collapsed)."""
    dom = Dom()
    dom.feed(chromium("--dump-dom", page.as_uri(), profile=profile))
    return dom, re.sub(r"\s+", " ", " ".join(dom.text))


def shown_status(result: dict) -> str:
    """The status a report shows for one summary result (a passed scenario with warnings says so)."""
    warned = any(c["status"] == "passed with warnings" for c in result["checks"])
    return "passed with warnings" if result["status"] == "passed" and warned else result["status"].replace("_", " ")


def assert_scenarios(dom: Dom, results: list[dict]) -> None:
    rows = {cells[0]: cells for cells in dom.of("scenario-row")}
    assert sorted(rows) == sorted(guide_id(r["tags"]) for r in results), rows
    for r in results:
        assert rows[guide_id(r["tags"])][3] == shown_status(r), (r["scenario"], rows[guide_id(r["tags"])])


def test_the_migration_report_as_chromium_renders_it(lab, tmp_path):
    profile = tmp_path / "profile"
    migrate_md, migrate = tmp_path / "migrate.md", tmp_path / "migrate.html"
    run = lab.run_suite("-m", "migrate", "--report", str(migrate_md), "--html", str(migrate))
    assert run.code == 0, run.output[-4000:]
    assert migrate.stat().st_mode & 0o777 == 0o600

    # every step, with the status the run gave it, as the browser shows it
    dom, text = rendered(migrate, profile)
    assert len(run.summary["results"]) == 10 and {r["status"] for r in run.summary["results"]} == {"passed"}
    assert_scenarios(dom, run.summary["results"])
    assert dom.of("node-row")[0][1] == "passed"
    for change in run.summary["changes"][:20]:
        assert re.sub(r"\s+", " ", change)[:80] in text, change

    # the timeline: each scenario with its steps, starts increasing, durations shown
    timeline = [(cls.split()[1], cells) for cls, cells in dom.rows if "tl-row" in cls.split()]
    kinds = [k for k, _ in timeline]
    assert kinds.count("tl-scenario") == 10 and kinds.count("tl-step") >= 20, kinds
    starts = [float(cells[0].strip("+ s")) for k, cells in timeline if k == "tl-scenario"]
    assert starts == sorted(starts)
    assert all(re.fullmatch(r"[\d.]+ m?s", cells[1]) for _, cells in timeline), timeline[:3]
    steps = [cells[3] for k, cells in timeline if k == "tl-step"]
    background = "Given the migration journal of the target node"      # features/02_migration.feature
    assert steps.count(background) == 10 and sum(s.startswith("When ") for s in steps) >= 10, steps
    assert {cells[4] for k, cells in timeline if k == "tl-step"} == {"passed"}

    # the post-migration checklist: every check's expected, found and evidence, as Markdown has them
    validate_md, validate = tmp_path / "validate.md", tmp_path / "validate.html"
    audit = lab.run_suite("-m", "validate", "--report", str(validate_md), "--html", str(validate))
    dom, text = rendered(validate, profile)
    assert_scenarios(dom, audit.summary["results"])
    evidence = re.findall(r"^    - ([\w.-]+): `(.*)`$", validate_md.read_text(), re.M)
    assert len(evidence) >= 10, validate_md.read_text()[:3000]
    for key, value in evidence:
        value = re.sub(r"\s+", " ", value)[:60]
        assert key in text and value in text, (key, value)
    for r in audit.summary["results"]:
        for c in r["checks"]:
            assert re.sub(r"\s+", " ", c["found"])[:60] in text, c
    assert "join_token/" not in text.replace("join_token/<redacted:", "")

    for page in (migrate, validate):
        shot = page.with_suffix(".png")
        chromium("--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri(),
                 profile=profile)
        assert shot.stat().st_size > 10_000
        print(f"report: {page}  screenshot: {shot}")
