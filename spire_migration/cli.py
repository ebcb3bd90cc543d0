"""``spire-migration migrate|validate|rollback|diagnose|finalize --target T``: the safe entry point.

Runs the suite's scenarios in-process with pytest, its config and rootdir
pinned to the project's (``-c`` the packaged ``suite.ini``, ``--rootdir`` the
folder that holds ``steps/``, ``-p no:cacheprovider``): no pytest.ini, tox.ini,
setup.cfg, pyproject.toml or conftest.py near the target or the working
directory is read, so it runs the same from ``/`` as from a checkout. Before
pytest starts it refuses (exit 4) an untrusted target (spire_migration/fsperm.py)
and a pytest config file beside or above the target (which ``pytest --target``
would run). Other pytest options (``-x``, ``-k``, ``-v``, ``--hosts``,
``--host-target``, ``--logs-since``, ``--tb``...) pass through, except those
that would unpin the config.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from spire_migration.errors import MigrationError
from spire_migration.fsperm import check_trusted_path
from spire_migration.pytest_options import PACKAGE_INI, config_near, foreign_config_message
from spire_migration.config.target import check_node_name

#: subcommand -> the scenarios' marker
MARKERS = {"migrate": "migrate", "validate": "validate", "rollback": "rollback",
           "diagnose": "diagnose", "finalize": "after_migration"}
#: options that would let a run read another config, rootdir, conftest or plugin
PINNED = ("-c", "--config-file", "--rootdir", "--confcutdir", "-o", "--override-ini", "-p", "-m",
          "--pyargs")
USAGE_ERROR = 4
#: migrate --part: the fleet parts, in the order a node goes through them (features 09, 10)
PARTS = ("server", "agent-prepare", "make", "agent-switch", "break", "agent-finish")
#: rollback --part: one node of a fleet back to Phase 3, in this order (feature 11)
ROLLBACK_PARTS = ("token", "agent", "reparent")
#: the parts that run on the server host, from a node's handoff (--handoff FILE)
HANDOFF_PARTS = ("make", "break", "token", "reparent")


def suite_dir() -> Path:
    """The folder that holds the suite's ``steps/``, ``fixtures/`` and ``features/``."""
    spec = importlib.util.find_spec("steps")
    if spec is None or spec.origin is None:
        raise MigrationError("the suite's steps are not installed", expected="package steps",
                             found="not importable", remedy="pip install spire-tpm-migration")
    return Path(spec.origin).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spire-migration", allow_abbrev=False,
        description="Performs and proves the SPIRE join_token to TPM migration (the guide's steps, "
                    "checklists, rollback) on the node a target description names.",
        epilog="Other pytest options pass through (e.g. -x, -v, -k EXPR, --hosts, --host-target, "
               "--logs-since). Exit codes: 0 all passed, 1 some failed, 4 could not run.")
    p.add_argument("command", choices=sorted(MARKERS),
                   help="migrate (guide steps 1-10), validate (checklists, hardening, audit; changes "
                        "nothing), rollback, diagnose (the guide's common issues), finalize (after migration)")
    p.add_argument("--target", required=True, metavar="FILE", help="target description (TOML)")
    p.add_argument("--node", metavar="NAME", help="this node of a fleet (target-NAME.toml next to --target)")
    p.add_argument("--plan", action="store_true", help="dry run: what each step would change")
    p.add_argument("--part", choices=PARTS + tuple(p for p in ROLLBACK_PARTS if p not in PARTS), metavar="PART",
                   help="migrate one part of a fleet migration: " + ", ".join(PARTS) +
                        " (server, make and break on the server host; the others on the agent node); "
                        "rollback one node of a fleet: " + ", ".join(ROLLBACK_PARTS) +
                        " (token and reparent on the server host, agent on the node)")
    p.add_argument("--handoff", metavar="FILE",
                   help="with --part make|break|token: the node's handoff.json; with --part reparent: "
                        "its rollback-handoff.json")
    for name, what in (("report", "Markdown report"), ("summary", "run summary JSON"),
                       ("junitxml", "JUnit XML"), ("cucumberjson", "cucumber JSON")):
        p.add_argument(f"--{name}", metavar="FILE", help=f"write the {what} to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress, terse pytest output")
    p.add_argument("--progress", choices=("text", "json", "off"), default="text",
                   help="live progress as text lines (default) or JSON lines on stdout")
    return p


def _refuse(message: str) -> int:
    print(f"spire-migration: {message}", file=sys.stderr)
    return USAGE_ERROR


def pytest_args(args: argparse.Namespace, passthrough: list[str], base: Path) -> list[str]:
    """The pinned pytest command line of one run."""
    marker = MARKERS[args.command]
    if args.part and args.command == "rollback":
        marker = f"fleet_rollback and part_rollback_{args.part}"
    elif args.part:
        marker = f"fleet and part_{args.part.replace('-', '_')}"
    out = ["-c", str(PACKAGE_INI), "--rootdir", str(base), "-p", "no:cacheprovider",
           "-p", "fixtures.suite", "-m", marker,
           f"--target={Path(args.target).absolute()}", f"--progress={args.progress}"]
    if args.handoff:
        out.append(f"--handoff={Path(args.handoff).absolute()}")
    for name in ("node", "report", "summary", "junitxml", "cucumberjson"):
        if getattr(args, name):
            out.append(f"--{name}={getattr(args, name)}")
    out += ["--plan"] * args.plan + ["-q"] * args.quiet
    return out + passthrough + [str(base / "steps" / "test_guide.py")]


def check_inputs(args: argparse.Namespace, passthrough: list[str]) -> str | None:
    """Why this run must not start (or None): unpinning options, bad node name, untrusted target."""
    for opt in passthrough:
        short = opt.startswith("-") and not opt.startswith("--") and set(opt[1:]) & set("cpmo")
        if opt.split("=", 1)[0] in PINNED or short:
            return (f"option {opt} is not allowed here: the entry point pins pytest's config, rootdir, "
                    f"plugins and marker (run pytest from a checkout for anything else)")
    if args.part and args.command not in ("migrate", "rollback"):
        return "--part goes with migrate or rollback"
    if args.part and args.part not in {"migrate": PARTS, "rollback": ROLLBACK_PARTS}[args.command]:
        parts = PARTS if args.command == "migrate" else ROLLBACK_PARTS
        return f"{args.command} --part takes one of {', '.join(parts)}, not {args.part}"
    if (args.part in HANDOFF_PARTS) != bool(args.handoff):
        return f"--handoff FILE goes with --part {'|'.join(HANDOFF_PARTS)}, and they need it"
    try:
        if args.node is not None:
            check_node_name(args.node)
        target = Path(args.target)
        if target.exists():
            check_trusted_path(target)
    except MigrationError as exc:
        return f"--target: {exc}"
    planted = config_near(args.target)
    if planted is not None:
        return foreign_config_message(planted, args.command, args.target) + \
            " The entry point does not read it, but refuses to run while it is there."
    return None


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parser().parse_known_args(argv)
    problem = check_inputs(args, passthrough)
    if problem:
        return _refuse(problem)
    for var in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):  # the environment must not unpin it either
        if os.environ.pop(var, None) is not None:
            print(f"spire-migration: ignoring {var}", file=sys.stderr)
    try:
        base = suite_dir()
    except MigrationError as exc:
        return _refuse(str(exc))
    import pytest

    return int(pytest.main(pytest_args(args, passthrough, base)))


if __name__ == "__main__":
    sys.exit(main())
