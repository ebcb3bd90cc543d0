"""The suite's command-line options, registered as a pytest11 entry point.

Registered at install time so pytest knows ``--target FILE`` takes a value
before it looks for its rootdir (else ``--target /x/t.toml`` moves the rootdir).
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("spire-migration")
    group.addoption("--target", action="store", default=None, metavar="FILE",
                    help="target description (TOML); default: the guide's values")
    group.addoption("--plan", action="store_true", default=False,
                    help="dry run: print what each migration step would change, change nothing")
    group.addoption("--summary", action="store", default=None, metavar="FILE",
                    help="run summary JSON (default: <journal dir>/<node>/runs/<time>.json)")
    group.addoption("--report", action="store", default=None, metavar="FILE",
                    help="human report (Markdown) of every check with its evidence")
