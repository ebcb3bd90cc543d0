"""The suite's command-line options and config pinning (a pytest11 entry point).

``pytest -m validate --target /dir/t.toml`` (the value after a space) makes
pytest take the value for a test path *before* any plugin tells it that
``--target`` takes a value: pytest then reads its ini file (``pytest.ini``,
``tox.ini``, ``setup.cfg``, ``pyproject.toml``) from ``/dir`` or a folder
above, applies its ``pythonpath`` and imports its ``-p`` plugins — also
before any entry-point plugin, this one included, is loaded. So no plugin can
prevent that import; this one stops the run at its first hook (before any
conftest, fixture or test; exit 4, naming the file).

Safe ways to run: the entry point ``spire-migration validate --target T``
(config and rootdir pinned to the project's, see spire_migration/cli.py), or
from a checkout ``pytest -m validate --target=T`` (the ``=`` form leaves
pytest's config lookup at the checkout). The target file itself must be
trusted (spire_migration/fsperm.py). This module imports pytest only inside
hooks (the library stays pytest-free).
"""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pluggy

hookimpl = pluggy.HookimplMarker("pytest")

#: Where the project's own pytest settings are: the checkout's pyproject, the wheel's ini.
PACKAGE_INI = Path(__file__).resolve().parent / "suite.ini"
CHECKOUT_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

#: pytest's config file names, in the order pytest looks for them in each folder.
CONFIG_NAMES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml",
                "tox.ini", "setup.cfg")


def pytest_addoption(parser) -> None:
    """Register the options once (as the entry point, or from fixtures/suite.py when not installed)."""
    group = parser.getgroup("spire-migration")
    if any("--target" in opt.names() for opt in group.options):
        return
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
    group.addoption("--server-host", action="store", default=None, metavar="SPEC",
                    help="with --hosts: the testinfra host of the SPIRE server (e.g. ansible://server); its "
                         "CLI, config and process are read there (default: the one host of the "
                         "--ansible-inventory group spire_servers, when --hosts uses ansible://)")
    group.addoption("--handoff", action="store", default=None, metavar="FILE",
                    help="fleet make/break parts (on the server host): the node's handoff.json")
    group.addoption("--progress", action="store", default="text", choices=("text", "json", "off"),
                    help="live progress: text lines (default; none with -q), JSON lines on stdout "
                         "(one object per scenario/step/wait event), or off")


def is_project_config(path: Path | None) -> bool:
    """True when ``path`` is the project's own pytest config (checkout or wheel)."""
    return path is not None and Path(path).resolve() in (PACKAGE_INI, CHECKOUT_PYPROJECT)


def _holds_pytest_config(path: Path) -> bool:
    if path.name in ("pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml"):
        return True  # pytest takes these even when empty
    try:
        text = path.read_text()
        if path.name == "pyproject.toml":
            return "pytest" in tomllib.loads(text).get("tool", {})
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read_string(text)
        return cfg.has_section("pytest" if path.name == "tox.ini" else "tool:pytest")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        return True  # unreadable or malformed: pytest might still read it; count it


def config_near(path: str | Path) -> Path | None:
    """The pytest config file ``pytest ... --target PATH`` would take from PATH's folders, if any."""
    start = Path(path).absolute()
    for folder in (start.parent, *start.parent.parents):
        for name in CONFIG_NAMES:
            candidate = folder / name
            if candidate.is_file() and not is_project_config(candidate) and _holds_pytest_config(candidate):
                return candidate
    return None


def foreign_config_message(path: Path | str, marker: str | None, target: str | None) -> str:
    command = f"spire-migration {marker or 'validate'} --target {target or 'T'}"
    found = (f"pytest config file {path} is not the project's: it could run code as root "
             f"(its addopts, -p plugins, pythonpath, conftest.py). Remove it if you did not put it there."
             if isinstance(path, Path) else
             f"pytest took no config file ({path}): the project's settings are missing and conftest.py "
             f"files near that folder could be read.")
    return (f"{found} "
            f"Run safely with the entry point: `{command}` (config pinned), or from the checkout with "
            f"`pytest -m {marker or 'validate'} --target={target or 'T'}` (note the '=').")


def check_run(config) -> None:
    """Stop (exit 4) a run of the suite whose config is foreign, or whose target is not trusted."""
    import pytest

    from spire_migration.errors import MigrationError
    from spire_migration.fsperm import check_trusted_path
    from spire_migration.config.target import check_node_name

    ns = config.known_args_namespace
    target, node = getattr(ns, "target", None), getattr(ns, "node", None)
    if target is None and node is None:
        return  # not a run of the suite (the project's own tests, another project's)
    if not is_project_config(config.inipath):
        found = config.inipath or f"rootdir {config.rootpath}, taken from the value after --target"
        marker = _MARKER_NAMES.get(getattr(ns, "markexpr", "") or "")
        raise pytest.UsageError(foreign_config_message(found, marker, target))
    try:
        if node is not None:
            check_node_name(node)
        if target is not None and Path(target).exists():
            check_trusted_path(target)
    except MigrationError as exc:
        raise pytest.UsageError(f"--target: {exc}") from None


_MARKER_NAMES = {"migrate": "migrate", "validate": "validate", "rollback": "rollback",
                 "diagnose": "diagnose", "after_migration": "finalize"}


@hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:  # noqa: ARG001
    """Before any conftest.py is imported: refuse a foreign config or an untrusted target."""
    check_run(early_config)

