"""The suite's command-line options, registered as a pytest11 entry point.

Registered at install time so pytest knows ``--target FILE`` takes a value
before it looks for its rootdir (else ``--target /x/t.toml`` moves the rootdir).
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("spire-migration")
    group.addoption("--target", action="store", default=None, metavar="FILE",
                    help="target description (TOML); default: the guide's values")
    group.addoption("--node", action="store", default=None, metavar="NAME",
                    help="work on this node of a fleet: target-NAME.toml next to --target "
                         "(or --target itself when its node is NAME)")
    group.addoption("--plan", action="store_true", default=False,
                    help="dry run: print what each migration step would change, change nothing")
    group.addoption("--summary", action="store", default=None, metavar="FILE",
                    help="run summary JSON (default: <journal dir>/<node>/runs/<time>.json)")
    group.addoption("--report", action="store", default=None, metavar="FILE",
                    help="human report (Markdown) of every check with its evidence")
    group.addoption("--html", action="store", default=None, metavar="FILE",
                    help="the same report as one self-contained HTML page, with the run's timeline")
    group.addoption("--logs-since", action="store", default=None, metavar="ISO8601",
                    help="post_check_8: audit SPIRE log errors from this reviewed point on "
                         "(default: the migration, journal fact migrated_at)")
    group.addoption("--host-target", action="append", default=[], metavar="HOST=FILE",
                    help="with --hosts: the target description of one host (its pytest id, e.g. "
                         "docker://node-2, or the host spec); hosts without one use --target")
