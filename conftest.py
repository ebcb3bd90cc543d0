"""Options, plugin wiring and the run-order rules of the suite.

``pytest -m migrate --target T`` performs the migration, ``-m validate``
audits, ``-m rollback`` returns the node. Migration and rollback scenarios
stop at the first failure: later ones are reported as not run (skipped with
the reason), never as passed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from spire_migration import pytest_options

pytest_plugins = [
    "fixtures.node",
    "fixtures.reporting",
    "steps.common",
    "steps.pre_migration",
    "steps.migration",
    "steps.rollback",
    "steps.gradual",
    "steps.diagnose",
    "fixtures.fleet",
    "fixtures.audited",
    "steps.post_migration",
    "steps.hardening",
    "steps.audit",
]

_ORDERED = ("migrate", "rollback")
_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Apply pyproject's pytest settings when pytest did not find them.

    ``pytest --target /elsewhere/t.toml`` makes pytest look for its config next
    to that file (it does not know yet that ``--target`` takes a value), so the
    markers and --strict-markers of pyproject.toml are applied here as well.
    """
    if config.inipath is not None and config.inipath.parent == _HERE:
        return
    ini = tomllib.loads((_HERE / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    for line in ini["markers"]:
        config.addinivalue_line("markers", line)
    config.option.strict_markers = True
    for name in ("lfplugin", "nfplugin"):  # and keep pytest's cache out of the target's directory
        if (plugin := config.pluginmanager.get_plugin(name)) is not None:
            config.pluginmanager.unregister(plugin)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the options here too when the package is not installed (entry point absent)."""
    try:
        pytest_options.pytest_addoption(parser)
    except ValueError:  # already registered by the installed pytest11 entry point
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed and any(item.get_closest_marker(m) for m in _ORDERED):
        item.session.config.stash.setdefault(_FAILED, []).append(item.name)
        if item.get_closest_marker("migrate") and not item.config.getoption("--plan"):
            target = item.config.getoption("--target") or "<target.toml>"
            report.sections.append(("the way back", _WAY_BACK.format(target=target)))


_FAILED = pytest.StashKey[list]()
_WAY_BACK = ("The migration stopped here; nothing after this step ran. Fix the cause above and re-run\n"
             "`pytest -m migrate --target {target}`: it resumes from the journal. To return the node\n"
             "to Phase 3 instead: `pytest -m rollback --target {target}` (configs restored from the\n"
             "journal's backups, a new join token, every entry re-parented).")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not any(item.get_closest_marker(m) for m in _ORDERED):
        return
    failed = item.session.config.stash.get(_FAILED, [])
    if failed:
        pytest.skip(f"not run: an earlier step failed ({failed[0]}); fix it, then re-run (the journal resumes)")
