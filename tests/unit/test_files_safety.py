"""Root never writes through a planted link, and two runs never lose each other's journal.

Each test plants what a local user could plant in a folder root writes into
(the agent's data dir, a config dir, the process log's folder) and checks that
the victim the link points at is untouched and the error names the link.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spire_migration.records import locks
from spire_migration.node import process
from spire_migration.node import services
from spire_migration.errors import FileError, JournalError, MigrationError
from spire_migration.fileio import write_file
from spire_migration.procedures.finalize import finalize
from spire_migration.config.hclconfig import HclConfig
from spire_migration.records.journal import Journal
from spire_migration.records.locks import server_lock
from spire_migration.procedures.migration import Migration
from spire_migration.procedures.rollback import Rollback
from spire_migration.config.target import Target

VICTIM = b"root:x:0:0:the file a local user wants root to overwrite\n"
NOBODY, NOGROUP = 65534, 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    os.chmod(path, 0o644)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == VICTIM and stat.S_IMODE(victim.stat().st_mode) == 0o644


def _target(tmp_path: Path) -> Target:
    return Target.from_dict({
        "server": {"config": str(tmp_path / "conf" / "server.conf")},
        "agent": {"config": str(tmp_path / "conf" / "agent.conf"), "data_dir": str(tmp_path / "data")},
        "journal": {"dir": str(tmp_path / "journal")}})


# -- the journal's writer: a predictable temp name -------------------------------------------
def test_a_link_at_the_old_predictable_temp_name_is_never_written_through(tmp_path, victim):
    j = Journal(tmp_path / "node-1")
    (j.root / f".journal.json.{os.getpid()}.tmp").symlink_to(victim)
    j.complete("guide_step_1", ["verified"])
    assert untouched(victim)
    assert json.loads(j.path.read_text())["steps"]["guide_step_1"]["status"] == "done"


def test_forget_agent_svid_never_writes_through_a_link_planted_in_the_data_dir(tmp_path, victim):
    t = _target(tmp_path)
    t.agent.data_dir.mkdir()
    services.agent_data_file(t).write_text(json.dumps({"svid": ["x"], "bundle": ["b"]}))
    (t.agent.data_dir / f".agent-data.json.{os.getpid()}.tmp").symlink_to(victim)
    assert services.forget_agent_svid(t)
    assert untouched(victim)
    assert json.loads(services.agent_data_file(t).read_text())["svid"] is None


def test_forget_agent_svid_refuses_agent_data_json_that_is_a_link(tmp_path, victim):
    t = _target(tmp_path)
    t.agent.data_dir.mkdir()
    victim.write_bytes(json.dumps({"svid": ["x"]}).encode())
    link = services.agent_data_file(t)
    link.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(MigrationError, match=str(link)):
        services.forget_agent_svid(t)
    assert victim.read_bytes() == before and link.is_symlink()


@root_only
def test_forget_agent_svid_keeps_the_agent_users_owner_and_mode(tmp_path):
    t = _target(tmp_path)
    t.agent.data_dir.mkdir()
    path = services.agent_data_file(t)
    path.write_text(json.dumps({"svid": ["x"]}))
    os.chown(path, NOBODY, NOGROUP)
    os.chmod(path, 0o640)
    assert services.forget_agent_svid(t)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOGROUP, 0o640)


# -- the journal's lock -------------------------------------------------------------------------
def test_the_lock_refuses_a_planted_link_and_leaves_its_target_alone(tmp_path, victim):
    j = Journal(tmp_path / "node-1")
    link = j.root / "lock"
    link.symlink_to(victim)
    with pytest.raises(MigrationError, match=str(link)):
        with j.lock():
            pass
    assert untouched(victim)


def test_the_lock_never_truncates_a_file_it_did_not_create(tmp_path):
    j = Journal(tmp_path / "node-1")
    hard = j.root / "lock"
    hard.write_bytes(VICTIM)   # e.g. a hard link to someone's file
    with j.lock():
        pass
    assert hard.read_bytes() == VICTIM


# -- rollback's config restore --------------------------------------------------------------------
def _migrated(tmp_path: Path) -> tuple[Target, Journal]:
    t = _target(tmp_path)
    t.server.config.parent.mkdir(parents=True)
    for path, text in ((t.server.config, "server {}\n"), (t.agent.config, "agent {}\n")):
        path.write_text(text)
    j = Journal(t.journal.dir / t.node)
    j.backup_file("server.conf", t.server.config)
    j.backup_file("agent.conf", t.agent.config)
    j.complete("guide_step_1", [])
    t.server.config.write_text("server { phase = 4 }\n")
    return t, j


def test_rollback_restore_refuses_agent_conf_that_is_a_link(tmp_path, victim):
    t, j = _migrated(tmp_path)
    t.agent.config.unlink()
    t.agent.config.symlink_to(victim)
    with pytest.raises(MigrationError, match=str(t.agent.config)):
        Rollback(t, j).step2_restore_configs()
    assert untouched(victim) and t.agent.config.is_symlink()
    assert t.server.config.read_text() == "server { phase = 4 }\n", "nothing restored before the refusal"


def test_rollback_restore_never_writes_through_the_old_temp_name(tmp_path, victim):
    t, j = _migrated(tmp_path)
    (t.server.config.parent / f".server.conf.{os.getpid()}.tmp").symlink_to(victim)
    Rollback(t, j).step2_restore_configs()
    assert untouched(victim)
    assert t.server.config.read_text() == "server {}\n" and not t.server.config.is_symlink()


# -- the process log and the pid file --------------------------------------------------------------
def _start(log: Path, pid_file: Path) -> None:
    info = None
    try:
        info = process.start(["/bin/sleep", "30"], log=log, pid_file=pid_file)
    finally:
        if info is not None:
            os.kill(info.pid, signal.SIGKILL)


def test_the_process_log_refuses_a_planted_link(tmp_path, victim):
    link = tmp_path / "agent.log"
    link.symlink_to(victim)
    with pytest.raises(MigrationError, match=str(link)):
        _start(link, tmp_path / "agent.pid")
    assert untouched(victim)
    assert not (tmp_path / "agent.pid").exists(), "nothing started"


def test_the_pid_file_refuses_a_planted_link(tmp_path, victim):
    link = tmp_path / "agent.pid"
    link.symlink_to(victim)
    with pytest.raises(MigrationError, match=str(link)):
        _start(tmp_path / "agent.log", link)
    assert untouched(victim)


# -- lock, then read: two runs never lose each other's records ------------------------------------
def test_a_run_that_read_the_journal_before_the_lock_does_not_lose_the_other_runs_records(tmp_path):
    """The forced interleaving: B reads, A runs step 3 and releases, B takes the lock and runs step 3."""
    a, b = Journal(tmp_path / "node-1"), Journal(tmp_path / "node-1")   # both read an empty journal
    with a.lock():
        a.backup_data("entries.json", '{"entries": ["phase 3"]}')
        a.complete("guide_step_3", ["exported 1 entry"])
    with b.lock():
        _, created = b.backup_data("entries.json", '{"entries": ["phase 4"]}')
        b.set_fact("entries_before", 1)
    assert not created, "B overwrote the Phase 3 backup"
    assert (tmp_path / "node-1" / "backups" / "entries.json").read_text() == '{"entries": ["phase 3"]}'
    assert Journal(tmp_path / "node-1").done("guide_step_3"), "B's save lost A's record"


# -- a stale lock after kill -9 never blocks --------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from spire_migration.records.journal import Journal
with Journal(Path(sys.argv[1])).lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lock_held_by_a_killed_run_is_free_at_once(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "node-1")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MigrationError, match=f"pid {holder.pid}"):
            with Journal(tmp_path / "node-1").lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    with Journal(tmp_path / "node-1").lock():
        assert time.monotonic() - started < 1.0


# -- the one writer ---------------------------------------------------------------------------------
@root_only
def test_write_file_keeps_owner_and_mode_unless_told(tmp_path):
    p = tmp_path / "agent.conf"
    p.write_text("agent {}\n")
    os.chown(p, NOBODY, NOGROUP)
    os.chmod(p, 0o640)
    write_file(p, "agent { a = 1 }\n")
    st = p.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOGROUP, 0o640)
    assert p.read_text() == "agent { a = 1 }\n"
    write_file(p, "agent {}\n", mode=0o600, owner=(0, 0))
    st = p.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)


def test_write_file_new_file_is_0600_bytes_exact_and_leaves_no_temp(tmp_path):
    p = tmp_path / "conf" / "server.conf"
    write_file(p, "a = 1\r\n")
    assert p.read_bytes() == b"a = 1\r\n" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert HclConfig.load(p).text == "a = 1\r\n"
    assert sorted(os.listdir(p.parent)) == ["server.conf"]


def test_write_file_refuses_a_link_and_names_it(tmp_path, victim):
    link = tmp_path / "agent.conf"
    link.symlink_to(victim)
    with pytest.raises(FileError, match=f"{link}: it is a symbolic link"):
        write_file(link, "agent {}\n")
    assert untouched(victim) and link.is_symlink()


def test_write_file_replaces_a_hard_link_without_writing_its_other_name(tmp_path, victim):
    hard = tmp_path / "agent-data.json"
    os.link(victim, hard)
    write_file(hard, "{}")
    assert untouched(victim) and hard.read_text() == "{}"


def test_write_file_refuses_a_folder_link_others_could_have_planted(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    real = tmp_path / "real"
    real.mkdir()
    (shared / "conf").symlink_to(real)
    with pytest.raises(FileError, match=f"its folder {shared / 'conf'} is a symbolic link"):
        write_file(shared / "conf" / "agent.conf", "agent {}\n")
    assert not (real / "agent.conf").exists()
    (tmp_path / "conf").symlink_to(real)   # a link only root (and we) may replace: an admin's choice
    write_file(tmp_path / "conf" / "agent.conf", "agent {}\n")
    assert (real / "agent.conf").read_text() == "agent {}\n"


def test_write_file_refuses_what_is_not_a_regular_file(tmp_path):
    (tmp_path / "agent.conf").mkdir()
    with pytest.raises(FileError, match="not a regular file"):
        write_file(tmp_path / "agent.conf", "agent {}\n")


# -- the server lock --------------------------------------------------------------------------------
HOLD_SERVER = """
import sys, time
from pathlib import Path
from spire_migration.records.locks import server_lock
with server_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def server_holder(tmp_path):
    """Another process holding the server lock of the journal dir ``tmp_path / "journal"``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SERVER, str(tmp_path / "journal")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait()


def test_the_server_lock_is_taken_once_and_free_at_once_after_kill_9(tmp_path, server_holder):
    with pytest.raises(JournalError, match=f"held by pid {server_holder.pid}"):
        with server_lock(tmp_path / "journal", timeout=0.2):
            pass
    got: list[float] = []

    def wait() -> None:
        with server_lock(tmp_path / "journal", timeout=30):
            got.append(time.monotonic())
    waiter = threading.Thread(target=wait)
    waiter.start()
    killed = time.monotonic()
    os.kill(server_holder.pid, signal.SIGKILL)
    waiter.join(30)
    assert got and got[0] - killed < 2.0, "the waiter got the lock of the killed holder"


def test_migration_steps_4_to_6_wait_for_the_server_lock(tmp_path, server_holder, monkeypatch):
    t, j = _migrated(tmp_path)
    before = t.server.config.read_bytes(), t.agent.config.read_bytes()
    monkeypatch.setattr(locks, "SERVER_LOCK_WAIT", 0.3)
    m = Migration(t, j)
    for step in ("step4_configure", "step5_stop_phase3", "step6_start_phase4"):
        with pytest.raises(JournalError, match="another run holds the server lock"):
            getattr(m, step)()
    rb = Rollback(t, j)
    for step in ("step1_stop_phase4", "step2_restore_configs", "step3_restart_phase3"):
        with pytest.raises(JournalError, match="another run holds the server lock"):
            getattr(rb, step)()
    assert (t.server.config.read_bytes(), t.agent.config.read_bytes()) == before


def test_finalize_takes_the_server_lock_and_every_nodes_lock_before_it_changes_anything(
        tmp_path, monkeypatch):
    t, j = _migrated(tmp_path)
    t.server.config.write_text('plugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n')
    before = t.server.config.read_bytes()
    other = Journal(t.journal.dir / "node-2")
    other.complete("guide_step_10", [])
    with other.lock():   # node-2's run is in progress
        with pytest.raises(JournalError, match=str(other.root / "lock")):
            finalize(t, j)
    assert t.server.config.read_bytes() == before
    monkeypatch.setattr(locks, "SERVER_LOCK_WAIT", 0.2)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SERVER, str(t.journal.dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JournalError, match="server lock"):
            finalize(t, j)
    finally:
        holder.kill()
        holder.wait()
    assert t.server.config.read_bytes() == before


def test_a_process_started_after_a_config_was_written_is_not_older_than_it(tmp_path):
    """finalize (and steps 5-6) restart what started before the config: the start time must be exact."""
    conf = tmp_path / "server.conf"
    write_file(conf, "server {}\n")
    info = process.start(["/bin/sleep", "30"], log=tmp_path / "log", pid_file=tmp_path / "pid")
    try:
        assert not services.started_before(info, conf)
        assert info.started_at >= conf.stat().st_mtime - 0.05
    finally:
        os.kill(info.pid, signal.SIGKILL)


# -- the lab's writers ------------------------------------------------------------------------------
def test_the_lab_adds_the_k8s_attestor_through_the_config_editor(tmp_path):
    from lab import configs
    from lab.k8s import pods
    from lab.layout import Layout

    lay = Layout(tmp_path)
    conf = tmp_path / "agent.conf"
    write_file(conf, configs.agent_conf(lay, lay.node("node-1"), "example.org", 8081, "unix:///d.sock"),
               mode=0o644)
    before = HclConfig.load(conf)
    assert pods.add_k8s_attestor(conf, 10255)
    cfg = HclConfig.load(conf)
    assert cfg.plugins("WorkloadAttestor")["k8s"] == {
        "plugin_data": {"kubelet_read_only_port": 10255, "use_new_container_locator": False}}
    assert cfg.without_plugin("WorkloadAttestor", "k8s").text == before.text, "the rest is unchanged"
    assert not pods.add_k8s_attestor(conf, 10255)
    assert pods.add_k8s_attestor(conf, 10256)
    assert HclConfig.load(conf).plugins("WorkloadAttestor")["k8s"]["plugin_data"]["kubelet_read_only_port"] == 10256
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
