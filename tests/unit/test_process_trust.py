"""Which process is SPIRE: the kernel's word (exe, uid), never the name a process gives itself."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from spire_migration.node import process
from spire_migration.retry import poll

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run a process as nobody")
NOBODY = 65534


@pytest.fixture
def impostor() -> Iterator[subprocess.Popen]:
    """A process run by nobody that calls itself spire-agent (``exec -a``): it is sleep."""
    proc = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                             "bash", "-c", "exec -a spire-agent sleep 600"])
    poll(lambda: (i := process.proc_info(proc.pid)) is not None and i.argv[:1] == ("spire-agent",),
         timeout=10, what="the impostor to exec")
    yield proc
    proc.kill()
    proc.wait()


def _fake_agent_binary(tmp_path: Path) -> Path:
    binary = tmp_path / "bin" / "spire-agent"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_a_pid_file_naming_an_impostor_is_not_the_agent(tmp_path: Path, impostor: subprocess.Popen) -> None:
    pid_file = tmp_path / "agent.pid"
    pid_file.write_text(f"{impostor.pid}\n")
    info = process.proc_info(impostor.pid)
    assert info is not None and info.argv[0] == "spire-agent"
    assert f"Uid:\t{NOBODY}" in Path(f"/proc/{impostor.pid}/status").read_text()
    assert process.find(_fake_agent_binary(tmp_path), pid_file) is None, "an impostor was taken for the agent"


def test_root_running_another_binary_under_the_name_is_not_the_agent(tmp_path: Path) -> None:
    proc = subprocess.Popen(["bash", "-c", "exec -a spire-agent sleep 600"])
    try:
        poll(lambda: (i := process.proc_info(proc.pid)) is not None and i.argv[:1] == ("spire-agent",),
             timeout=10, what="the process to exec")
        (tmp_path / "agent.pid").write_text(f"{proc.pid}\n")
        assert process.find(_fake_agent_binary(tmp_path), tmp_path / "agent.pid") is None
        assert process.find(shutil.which("sleep"), tmp_path / "agent.pid") is not None   # the kernel's word
    finally:
        proc.kill()
        proc.wait()


def test_the_configured_user_counts_and_others_do_not(tmp_path: Path, impostor: subprocess.Popen) -> None:
    (tmp_path / "p.pid").write_text(f"{impostor.pid}\n")
    sleep = shutil.which("sleep")
    assert process.find(sleep, tmp_path / "p.pid") is None               # nobody is not root
    assert process.find(sleep, tmp_path / "p.pid", user="nobody") is not None


def test_a_socket_in_a_folder_others_can_write_names_no_owner(tmp_path: Path) -> None:
    folder = tmp_path / "public"
    folder.mkdir()
    path = folder / "api.sock"
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(str(path))
        srv.listen()
        assert process.socket_owner(path) == os.getpid()
        os.chmod(folder, 0o777)
        assert process.socket_owner(path) is None
        os.chmod(folder, 0o755)
        os.chown(folder, NOBODY, NOBODY)
        assert process.socket_owner(path) is None


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        poll(lambda: (i := process.proc_info(proc.pid)) is not None and len(i.argv) == 3, timeout=10)
        info = process.proc_info(proc.pid)
        older = dataclasses.replace(info, started_at=info.started_at - 100)   # the pid's previous owner
        process.stop(older, timeout=1)
        assert proc.poll() is None, "a process that only shares the pid was signalled"
        process.stop(info, timeout=5)
        assert proc.wait(timeout=5) is not None
    finally:
        proc.kill()
        proc.wait()


def test_a_daemon_gets_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIRE_MIGRATION_KILL_AT", "guide_step_5")
    info = process.start([shutil.which("sleep"), "60"], log=tmp_path / "log", pid_file=tmp_path / "pid")
    try:
        env = dict(v.split("=", 1) for v in Path(f"/proc/{info.pid}/environ").read_text().split("\0") if v)
        assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ"}, sorted(env)
        assert "PATH" in env
    finally:
        process.stop(info, pid_file=tmp_path / "pid")


def test_a_socket_folder_under_a_folder_others_own_is_not_trusted(tmp_path: Path) -> None:
    planted = tmp_path / "spire-agent"          # e.g. /tmp/spire-agent made by a local user first
    (planted / "public").mkdir(parents=True)
    os.chown(planted, NOBODY, NOBODY)
    assert not process.trusted_folder(planted / "public", {0})
    os.chown(planted, 0, 0)
    assert process.trusted_folder(planted / "public", {0})
    assert process.trusted_folder(Path("/tmp"), {0}) is False      # itself writable by all
