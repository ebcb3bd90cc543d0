"""Systemd mode, the pure parts: command lines built, ``systemctl show`` parsed, refusals worded,
and which way each action goes (systemctl with a unit, the pid without). systemctl is faked here;
tests/lab/test_systemd_mode.py runs the real one (systemd as PID 1 in a container)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from spire_migration.config.target import Target
from spire_migration.errors import ProcessError, TargetError
from spire_migration.node import services, systemd, units
from spire_migration.node.runtimes import get_runtime
from spire_migration.node.runtimes.systemd import check_argv, parse_environment

EXEC_START = ("{ path=/opt/spire/bin/spire-agent ; argv[]=/opt/spire/bin/spire-agent run -config /opt/spire/conf/agent/"
              "agent.conf -joinToken 0d1f5c2e-aaaa-bbbb-cccc-1234567890ab ; ignore_errors=no ; start_time=[n/a] ; "
              "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }")


class FakeSystemd:
    """Answers systemctl/journalctl like systemd would; records every command line."""

    def __init__(self, props: dict[str, dict[str, str]] | None = None, journal: str = "") -> None:
        self.calls: list[list[str]] = []
        self.props = props or {}
        self.journal_text = journal

    def __call__(self, argv, timeout=0):
        argv = list(argv)
        self.calls.append(argv)
        out = ""
        if argv[0] == "journalctl":
            out = self.journal_text
        elif argv[1] == "show":
            unit = argv[-1]
            wanted = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            out = "".join(f"{k}={self.props.get(unit, {}).get(k, '')}\n" for k in wanted)
        elif argv[1] == "is-active":
            out = self.props.get(argv[-1], {}).get("ActiveState", "inactive") + "\n"
        return subprocess.CompletedProcess(argv, 0, out, "")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSystemd:
    f = FakeSystemd()
    monkeypatch.setattr(systemd, "run", f)
    return f


def test_target_unit_keys() -> None:
    t = Target.from_dict({"server": {"unit": "spire-server.service"}, "agent": {"unit": "spire-agent.service"},
                          "workload": {"runtime": "systemd", "unit": "mtls-app.service"}})
    assert (t.server.unit, t.agent.unit, t.workload.runtime) == ("spire-server.service", "spire-agent.service", "systemd")
    assert Target().agent.unit == "" and Target().server.unit == ""   # pid mode by default
    for bad in ("--now", "spire-agent", "a b.service", "../x.service"):
        with pytest.raises(TargetError, match="not a systemd service unit name"):
            Target.from_dict({"agent": {"unit": bad}})


def test_show_and_exec_start_parsed() -> None:
    assert systemd.parse_show("MainPID=7\nEnvironment=A=1 B=2\n") == {"MainPID": "7", "Environment": "A=1 B=2"}
    [argv] = systemd.exec_start_argvs(EXEC_START)
    assert argv[:4] == ["/opt/spire/bin/spire-agent", "run", "-config", "/opt/spire/conf/agent/agent.conf"]
    assert services.join_token_flag(argv) == "-joinToken"
    assert systemd.exec_start_argvs("") == []


def test_cgroup_lines_name_the_unit() -> None:
    v1 = "11:memory:/system.slice/spire-agent.service\n1:name=systemd:/system.slice/spire-agent.service\n"
    assert systemd.parse_cgroup_unit(v1) == "spire-agent.service"
    assert systemd.parse_cgroup_unit("0::/system.slice/spire-server.service\n") == "spire-server.service"
    assert systemd.parse_cgroup_unit("1:name=systemd:/\n0::/\n") is None   # not a unit's process


def test_commands_carry_no_secret_and_use_the_unit(fake: FakeSystemd) -> None:
    from datetime import datetime, timezone
    fake.props = {"spire-agent.service": {"MainPID": "0", "ActiveState": "inactive"}}
    assert systemd.main_pid("spire-agent.service") == 0
    assert not systemd.is_active("spire-agent.service")
    systemd.journal("spire-agent.service", since=datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc))
    systemd.journal_tail("spire-agent.service")
    assert fake.calls == [
        ["systemctl", "show", "-p", "MainPID", "--", "spire-agent.service"],
        ["systemctl", "is-active", "--", "spire-agent.service"],
        ["journalctl", "-u", "spire-agent.service", "--no-pager", "-o", "cat", "--since", "2026-12-02 05:00:00 UTC"],
        ["journalctl", "-u", "spire-agent.service", "--no-pager", "-n", "20"]]


def test_no_systemd_costs_no_command(monkeypatch: pytest.MonkeyPatch, fake: FakeSystemd) -> None:
    monkeypatch.setattr(systemd, "booted", lambda: False)
    units.refuse_unit_managed(Path("/opt/spire/bin/spire-agent"), None, "agent")
    assert systemd.unit_of_pid(1) is None
    assert fake.calls == []


def test_a_unit_running_the_agent_is_named_in_the_refusal(monkeypatch: pytest.MonkeyPatch, fake: FakeSystemd) -> None:
    monkeypatch.setattr(systemd, "booted", lambda: True)
    monkeypatch.setattr(systemd, "unit_of_pid", lambda pid: "spire-agent.service")
    fake.props = {"spire-agent.service": {"MainPID": "4242"}}
    from spire_migration.node.process import ProcInfo
    with pytest.raises(ProcessError) as exc:
        units.refuse_unit_managed(Path("/opt/spire/bin/spire-agent"), ProcInfo(4242, ("spire-agent",), 0.0), "agent")
    assert 'set unit = "spire-agent.service" in [agent]' in str(exc.value)


def test_exec_start_with_a_token_is_refused_redacted(fake: FakeSystemd) -> None:
    fake.props = {"spire-agent.service": {"ExecStart": EXEC_START}}
    with pytest.raises(ProcessError) as exc:
        units.join_token_in_exec_start("spire-agent.service", services.join_token_flag)
    text = str(exc.value)
    assert "spire-agent.service starts spire-agent with -joinToken" in text
    assert "0d1f5c2e-aaaa" not in text and "join_token_file" in text


def test_a_failed_unit_is_an_error_with_its_journal(fake: FakeSystemd) -> None:
    fake.props = {"spire-server.service": {"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
                                           "LoadState": "loaded"}}
    fake.journal_text = 'Dec 02 spire-server[9]: level=error msg="bad" password="hunter22"\n'
    with pytest.raises(ProcessError) as exc:
        units.start("spire-server.service", "spire-server", lambda: None, lambda: False, timeout=5)
    text = str(exc.value)
    assert "spire-server.service (spire-server) did not start" in text and 'level=error msg="bad"' in text
    assert "hunter22" not in text
    assert ["systemctl", "start", "--", "spire-server.service"] in fake.calls


def test_each_action_goes_through_systemctl_with_a_unit(monkeypatch: pytest.MonkeyPatch, fake: FakeSystemd) -> None:
    t = Target.from_dict({"agent": {"unit": "spire-agent.service"}, "server": {"unit": "spire-server.service"}})
    monkeypatch.setattr(services, "agent_proc", lambda t: None)
    monkeypatch.setattr(services, "server_proc", lambda t: None)
    fake.props = {"spire-agent.service": {"ActiveState": "active"}, "spire-server.service": {"ActiveState": "active"}}
    services.stop_agent(t)
    services.stop_server(t)
    assert ["systemctl", "stop", "--", "spire-agent.service"] in fake.calls
    assert ["systemctl", "stop", "--", "spire-server.service"] in fake.calls
    assert services.log_source(t, "agent") == "journalctl -u spire-agent.service"
    assert services.log_source(Target(), "agent") == "/opt/spire/agent.log"


def test_pid_mode_stays_pid_mode(monkeypatch: pytest.MonkeyPatch, fake: FakeSystemd) -> None:
    monkeypatch.setattr(systemd, "booted", lambda: False)
    monkeypatch.setattr(services, "agent_proc", lambda t: None)
    assert services.stop_agent(Target()) is None
    assert fake.calls == []


def test_config_arg() -> None:
    assert units.config_arg(["spire-server", "run", "-config", "/a"]) == "/a"
    assert units.config_arg(["spire-server", "run", "-config=/b"]) == "/b"
    assert units.config_arg(["spire-server", "run"]) is None


def test_workload_unit_check_command_and_environment() -> None:
    assert check_argv(["/py", "/app.py", "demo", "--interval", "1"], 3) == ["/py", "/app.py", "check", "--timeout", "3"]
    with pytest.raises(Exception, match="known mode"):
        check_argv(["/usr/bin/sleep", "100"], 3)
    assert parse_environment('A=1 "B=two words"') == {"A": "1", "B": "two words"}
    rt = get_runtime(Target.from_dict({"workload": {"runtime": "systemd", "unit": "app.service"}}))
    assert rt.name == "systemd" and rt.drop_in == Path("/run/systemd/system/app.service.d/50-spire-migration.conf")
    assert "SPIRE_AGENT_ID=spiffe://x/a" in rt._drop_in_text(4, "spiffe://x/a")
    assert "SPIRE_AGENT_ID" not in rt._drop_in_text(3, "spiffe://x/a")
