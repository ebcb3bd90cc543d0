"""Issue 9.1 and 9.7: the target file, the folders above it and the journal folder are checked.

A target description another user can write (or replace, through a folder
above it) decides what root changes; a journal folder someone else owns or
can enter is not the suite's to keep; a node name becomes a path.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from spire_migration.errors import JournalError, TargetError
from spire_migration.fsperm import check_private_dir, check_trusted_path
from spire_migration.records.journal import Journal
from spire_migration.config.target import Target

PROJECT = Path(__file__).resolve().parents[2]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


def _target(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "node.toml"
    path.write_text('node = "node-1"\n')
    path.chmod(0o600)
    return path


def test_a_trusted_target_loads(trusted_tmp: Path) -> None:
    assert Target.load(_target(trusted_tmp / "etc")).node == "node-1"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777], ids=oct)
def test_a_folder_above_writable_by_others_is_refused(trusted_tmp: Path, mode: int) -> None:
    path = _target(trusted_tmp / "etc" / "node")
    (trusted_tmp / "etc").chmod(mode)
    with pytest.raises(TargetError) as err:
        Target.load(path)
    assert f"{trusted_tmp / 'etc'}: owner root (uid 0), mode {mode:04o}" in str(err.value)


@pytest.mark.parametrize("mode", [0o666, 0o620], ids=oct)
def test_a_target_file_writable_by_others_is_refused(trusted_tmp: Path, mode: int) -> None:
    path = _target(trusted_tmp)
    path.chmod(mode)
    with pytest.raises(TargetError, match=f"mode {mode:04o}"):
        Target.load(path)


@as_root
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_target_or_folder_of_another_user_is_refused(trusted_tmp: Path, what: str) -> None:
    path = _target(trusted_tmp / "etc")
    os.chown(path if what == "file" else path.parent, _nobody(), -1)
    with pytest.raises(TargetError) as err:
        Target.load(path)
    assert "owner nobody" in str(err.value) and "expected: owned by root (uid 0)" in str(err.value)


def test_a_target_under_tmp_is_refused(tmp_path: Path) -> None:
    """/tmp is writable by everyone (sticky or not): anyone can plant /tmp/pytest.ini there."""
    with pytest.raises(TargetError, match="writable by group or others"):
        check_trusted_path(_target(tmp_path))


def test_a_symlinked_target_is_checked_where_it_points(trusted_tmp: Path, tmp_path: Path) -> None:
    link = trusted_tmp / "node.toml"
    link.symlink_to(_target(tmp_path))
    with pytest.raises(TargetError, match="writable by group or others"):
        Target.load(link)


@pytest.mark.parametrize("name", ["../../etc/cron.d", "node/1", "Node-1", "-node", "", "node_1", "nöde"])
def test_node_names_that_are_not_plain_are_refused(name: str) -> None:
    with pytest.raises(TargetError, match="node name .* is not allowed") as err:
        Target.from_dict({"node": name})
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=oct)
def test_a_journal_folder_others_can_enter_is_refused(trusted_tmp: Path, mode: int) -> None:
    root = trusted_tmp / "node-1"
    root.mkdir(mode=mode)
    root.chmod(mode)
    with pytest.raises(JournalError, match=f"has mode {mode:04o}"):
        Journal(root)


@as_root
def test_a_journal_folder_of_another_owner_is_refused(trusted_tmp: Path) -> None:
    root = trusted_tmp / "node-1"
    root.mkdir(mode=0o700)
    os.chown(root, _nobody(), -1)
    with pytest.raises(JournalError, match="is owned by nobody"):
        Journal(root)
    with pytest.raises(JournalError, match="is owned by nobody"):
        Journal(root, create=False)


def test_a_journal_folder_that_is_a_symlink_is_refused(trusted_tmp: Path) -> None:
    (trusted_tmp / "elsewhere").mkdir(mode=0o700)
    (trusted_tmp / "node-1").symlink_to(trusted_tmp / "elsewhere")
    with pytest.raises(JournalError, match="not a folder"):
        check_private_dir(trusted_tmp / "node-1", JournalError)


def test_a_new_journal_folder_is_private(trusted_tmp: Path) -> None:
    j = Journal(trusted_tmp / "journal" / "node-1")
    assert oct(j.root.stat().st_mode & 0o777) == "0o700"
    Journal(j.root)  # and accepted again


def test_the_entry_point_refuses_an_untrusted_target_before_pytest(trusted_tmp: Path) -> None:
    path = _target(trusted_tmp / "etc")
    path.parent.chmod(0o777)
    proc = subprocess.run([sys.executable, "-m", "spire_migration.cli", "validate", "--target", str(path)],
                          cwd="/", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert f"{path.parent}: owner root (uid 0), mode 0777" in proc.stderr
    assert "test session starts" not in proc.stdout


def test_the_entry_point_refuses_a_bad_node_name(trusted_tmp: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "spire_migration.cli", "migrate", "--target",
                           str(_target(trusted_tmp)), "--node", "../x"], cwd="/", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 4 and "node name '../x' is not allowed" in proc.stderr
