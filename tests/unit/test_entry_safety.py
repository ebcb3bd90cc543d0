"""Issue 9.1: a pytest config file planted beside (or above) the target runs nothing.

Each case plants a config file whose ``addopts = -p <plugin>`` and
``pythonpath`` would import a plugin that writes a marker file, then runs the
suite the two ways a user can: the entry point (``spire-migration``, config
pinned: the plugin must never run, exit 4 naming the file) and ``pytest -m
validate --target T`` from the checkout (pytest itself imports ``-p`` plugins
of the ini it takes before any plugin of the project is loaded, so the best
the project can do there is to stop at once with exit 4 naming the file).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
PLUGIN = "planted_plugin_{n}"

CONFIGS = {
    "pytest.ini": "[pytest]\naddopts = -p {plugin}\npythonpath = {dir}\n",
    "tox.ini": "[pytest]\naddopts = -p {plugin}\npythonpath = {dir}\n",
    "setup.cfg": "[tool:pytest]\naddopts = -p {plugin}\npythonpath = {dir}\n",
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-p {plugin}"\npythonpath = ["{dir}"]\n',
}


def _plant(base: Path, kind: str, where: str) -> tuple[Path, Path, Path]:
    """(target, planted config, marker): config beside the target or in its parent folder."""
    plugin = PLUGIN.format(n=abs(hash((kind, where))) % 10**6)
    folder = base / "etc" / "node"
    folder.mkdir(parents=True)
    conf_dir = folder if where == "beside" else folder.parent
    marker = base / "plugin-ran"
    (conf_dir / f"{plugin}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    planted = conf_dir / kind
    planted.write_text(CONFIGS[kind].format(plugin=plugin, dir=conf_dir))
    target = folder / "node.toml"
    target.write_text('node = "node-1"\n')
    return target, planted, marker


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", ["beside", "parent"])
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_the_entry_point_never_runs_a_planted_config(trusted_tmp: Path, kind: str, where: str) -> None:
    target, planted, marker = _plant(trusted_tmp, kind, where)
    proc = _run(sys.executable, "-m", "spire_migration.cli", "validate", "--target", str(target),
                "--collect-only")
    out = proc.stdout + proc.stderr
    assert not marker.exists(), f"the planted plugin ran:\n{out}"
    assert proc.returncode == 4, out
    assert str(planted) in out and "spire-migration" in out


@pytest.mark.parametrize("where", ["beside", "parent"])
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_pytest_stops_when_it_took_a_foreign_config(trusted_tmp: Path, kind: str, where: str) -> None:
    target, planted, _ = _plant(trusted_tmp, kind, where)
    proc = _run(sys.executable, "-m", "pytest", "-m", "validate", "--target", str(target), "--collect-only")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert str(planted) in out and "spire-migration validate" in out


def test_pytest_from_the_checkout_with_the_equals_form_takes_the_projects_config(trusted_tmp: Path) -> None:
    target, _, marker = _plant(trusted_tmp, "pytest.ini", "beside")
    proc = _run(sys.executable, "-m", "pytest", "-m", "validate", f"--target={target}", "--collect-only", "-q")
    assert not marker.exists()
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("runner", ["entry point", "pytest"])
def test_a_planted_conftest_beside_the_target_never_runs(trusted_tmp: Path, runner: str) -> None:
    """Guard: with no config file, a conftest.py beside the target is never imported either."""
    folder = trusted_tmp / "etc" / "node"
    folder.mkdir(parents=True)
    marker = trusted_tmp / "conftest-ran"
    (folder / "conftest.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    target = folder / "node.toml"
    target.write_text('node = "node-1"\n')
    cmd = ([sys.executable, "-m", "spire_migration.cli", "validate", "--target", str(target)] if runner == "entry point"
           else [sys.executable, "-m", "pytest", "-m", "validate", "--target", str(target)])
    proc = _run(*cmd, "--collect-only")
    assert not marker.exists(), proc.stdout + proc.stderr
    if runner == "pytest":
        assert proc.returncode == 4 and "pytest took no config file" in proc.stdout + proc.stderr


@pytest.mark.parametrize("opt", [["-p", "evil"], ["-pevil"], ["-c", "/tmp/x.ini"], ["--rootdir=/tmp"],
                                 ["-o", "addopts=-p evil"], ["-m", "migrate"], ["--confcutdir", "/"]])
def test_the_entry_point_refuses_options_that_unpin_it(trusted_tmp: Path, opt: list[str]) -> None:
    from spire_migration import cli

    target, _, marker = _plant(trusted_tmp, "pytest.ini", "parent")
    (target.parent.parent / "pytest.ini").unlink()
    assert cli.main(["validate", "--target", str(target), *opt]) == 4
    assert not marker.exists()


def test_the_entry_point_pins_config_rootdir_marker_and_target() -> None:
    from spire_migration import cli

    args, rest = cli.parser().parse_known_args(["finalize", "--target", "t.toml", "--report", "r.md", "-x"])
    argv = cli.pytest_args(args, rest, Path("/site"))
    assert argv[:6] == ["-c", str(cli.PACKAGE_INI), "--rootdir", "/site", "-p", "no:cacheprovider"]
    assert ["-m", "after_migration"] == argv[argv.index("-m"):argv.index("-m") + 2]
    assert f"--target={Path('t.toml').absolute()}" in argv and "--report=r.md" in argv
    assert argv[-2:] == ["-x", "/site/steps/test_guide.py"]
