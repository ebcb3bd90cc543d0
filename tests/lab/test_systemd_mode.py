"""SPIRE and the workload under systemd, for real: systemd as PID 1 in a container of the lab's dockerd.

One container (cgroup v1, ``--cap-add SYS_ADMIN``, no network) runs spire-server, spire-agent and
the mTLS app as systemd units; the SPIRE binaries, this checkout, its .venv and the interpreter are
bind-mounted read-only at their own paths, so the library runs INSIDE the container
(``tests/lab/systemd_probe.py``, one action per ``docker exec``). Phase 3 under systemd: the agent's
unit reads agent.conf only, which names ``join_token_file``. No TPM is needed: what is proven is how
the suite starts, stops, finds and reads processes under systemd, and when it refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from lab import docker_engine
from lab.layout import private_base
from spire_migration.retry import poll

PROJECT = Path(__file__).resolve().parents[2]
SPIRE_BIN = Path.home() / ".cache/spire-tpm-migration/spire-1.15.3/bin"
IMAGE = "lab/sysd:1"
NAME = "spire-sysd"
SRV = "/srv/spire"
PY = str(PROJECT / ".venv/bin/python")
MASKED = ("avahi-daemon.service", "docker.service", "docker.socket", "nftables.service",
          "systemd-firstboot.service", "containerd.service", "getty@tty1.service", "console-getty.service")

UNITS = {
    "spire-server.service": f"""[Unit]
Description=SPIRE server
[Service]
ExecStart={SPIRE_BIN}/spire-server run -config {SRV}/server/server.conf
Restart=on-failure
RestartSec=1
""",
    "spire-agent.service": f"""[Unit]
Description=SPIRE agent
After=spire-server.service
[Service]
ExecStart={SPIRE_BIN}/spire-agent run -config {SRV}/agent/agent.conf
Restart=on-failure
RestartSec=1
""",
    "spire-bad.service": f"""[Unit]
Description=a SPIRE server that runs another config than the target names
[Service]
ExecStart={SPIRE_BIN}/spire-server run -config {SRV}/server/other.conf
""",
    "spire-broken.service": f"""[Unit]
Description=a SPIRE server started with a flag it does not know
[Service]
ExecStart={SPIRE_BIN}/spire-server run -config {SRV}/server/server.conf -notAFlag
""",
    "mtls-app.service": f"""[Unit]
Description=the guide's mTLS app
[Service]
User=app
Environment=SPIFFE_ENDPOINT_SOCKET=unix://{SRV}/agent/public/api.sock
Environment=PEER_SPIFFE_ID=spiffe://example.org/k8s-workload
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart={PY} {PROJECT}/workload/mtls_app.py demo --addr 127.0.0.1:9443 --interval 1
""",
}

SERVER_CONF = f"""server {{
    bind_address = "127.0.0.1"
    bind_port = "8081"
    socket_path = "{SRV}/server/api.sock"
    trust_domain = "example.org"
    data_dir = "{SRV}/server/data"
    log_level = "DEBUG"
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{SRV}/server/data/datastore.sqlite3"
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{SRV}/server/data/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"""

AGENT_CONF = f"""agent {{
    data_dir = "{SRV}/agent/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "8081"
    socket_path = "{SRV}/agent/public/api.sock"
    trust_bundle_path = "{SRV}/bootstrap.crt"
    trust_domain = "example.org"
    join_token_file = "{SRV}/agent/join_token"
}}
plugins {{
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            directory = "{SRV}/agent/data"
        }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"""


def target_toml(units: bool, server_unit: str = "spire-server.service", socket: str = "server/api.sock") -> str:
    lines = [f'bin_dir = "{SPIRE_BIN}"', 'trust_domain = "example.org"', "[server]",
             f'config = "{SRV}/server/server.conf"', f'socket = "{SRV}/{socket}"',
             f'data_dir = "{SRV}/server/data"', f'log = "{SRV}/server.log"', f'pid_file = "{SRV}/server.pid"']
    lines += [f'unit = "{server_unit}"'] if units else []
    lines += ["[agent]", f'config = "{SRV}/agent/agent.conf"', f'socket = "{SRV}/agent/public/api.sock"',
              f'data_dir = "{SRV}/agent/data"', f'log = "{SRV}/agent.log"', f'pid_file = "{SRV}/agent.pid"']
    lines += ['unit = "spire-agent.service"'] if units else []
    lines += ["[workload]", 'runtime = "systemd"', 'unit = "mtls-app.service"', "[thresholds]", "start_timeout_s = 60"]
    return "\n".join(lines) + "\n"


def rootfs_tar(folder: Path) -> bytes:
    """A root filesystem that borrows /usr (symlinks, /etc basics, unit files, masks), as a tar stream."""
    for d in ("usr", "etc/systemd/system", "run", "tmp", "var/log", "proc", "sys", "dev", "root", "opt", "srv",
              "home/app"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    for d in [folder, *folder.rglob("*")]:
        os.chmod(d, 0o1777 if d.name == "tmp" else 0o755)
    for name in ("bin", "lib", "lib64", "sbin"):
        (folder / name).symlink_to(f"usr/{name}")
    files = {"passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
             "group": "root:x:0:\napp:x:1000:\n", "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
             "hostname": "spire-sysd\n", "hosts": "127.0.0.1 localhost\n", "machine-id": ""}
    files.update({f"systemd/system/{unit}": text for unit, text in UNITS.items()})
    for name, text in files.items():
        (folder / "etc" / name).write_text(text)
        os.chmod(folder / "etc" / name, 0o644)
    for unit in MASKED:
        (folder / "etc/systemd/system" / unit).symlink_to("/dev/null")
    return subprocess.run(["tar", "-C", str(folder), "--owner=0", "--group=0", "-c", "."], capture_output=True,
                          check=True).stdout


class Box:
    """The container: ``docker`` against the lab's private engine."""

    def __init__(self, host: str, srv: Path) -> None:
        self.host, self.srv = host, srv

    def docker(self, *args: str, data: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], input=data, capture_output=True, check=check,
                              timeout=180)

    def sh(self, script: str, check: bool = True) -> str:
        return self.docker("exec", NAME, "sh", "-c", script, check=check).stdout.decode()

    def probe(self, action: str, target: str = "target.toml") -> dict:
        res = self.docker("exec", "-w", str(PROJECT), "-e", "PYTHONDONTWRITEBYTECODE=1", NAME, PY,
                          str(PROJECT / "tests/lab/systemd_probe.py"), action, f"{SRV}/{target}", check=False)
        out = res.stdout.decode().strip().splitlines()
        assert out and out[-1].startswith("{"), f"{action}: exit {res.returncode}\n{res.stderr.decode()[-3000:]}"
        return json.loads(out[-1])


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    if not (SPIRE_BIN / "spire-agent").is_file() or not shutil.which("dockerd") or not Path("/lib/systemd/systemd").exists():
        pytest.skip("needs the SPIRE build, dockerd and systemd (/lib/systemd/systemd)")
    root = Path(tempfile.mkdtemp(prefix="systemd-", dir=private_base()))
    srv = root / "srv"
    for sub in ("server/data", "agent/data", "agent/public"):
        (srv / sub).mkdir(parents=True)
    for d in [srv, *srv.rglob("*")]:
        os.chmod(d, 0o755)
    (srv / "server/server.conf").write_text(SERVER_CONF)
    (srv / "agent/agent.conf").write_text(AGENT_CONF)
    (srv / "server/bad-data").mkdir()
    (srv / "server/other.conf").write_text(SERVER_CONF.replace("api.sock", "bad.sock").replace('"8081"', '"8082"')
                                           .replace("server/data", "server/bad-data"))
    (srv / "target.toml").write_text(target_toml(True))
    (srv / "target-pid.toml").write_text(target_toml(False))
    (srv / "target-bad.toml").write_text(target_toml(True, "spire-bad.service", "server/bad.sock"))
    (srv / "target-broken.toml").write_text(target_toml(True, "spire-broken.service", "server/broken.sock"))
    host = docker_engine.start(root / "docker")
    b = Box(host, srv)
    try:
        b.docker("import", "-", IMAGE, data=rootfs_tar(root / "rootfs"))
        prefixes = dict.fromkeys(os.path.realpath(p) for p in (sys.base_prefix,))
        mounts = ["-v", "/usr:/usr:ro", "-v", f"{SPIRE_BIN}:{SPIRE_BIN}:ro", "-v", f"{PROJECT}:{PROJECT}:ro",
                  "-v", f"{srv}:{SRV}", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"]
        for p in prefixes:
            mounts += ["-v", f"{p}:{p}:ro"]
        b.docker("run", "-d", "--name", NAME, "--cap-add", "SYS_ADMIN", "--network", "none", "--tmpfs", "/run",
                 "--tmpfs", "/run/lock", "-e", "container=docker", *mounts, IMAGE, "/lib/systemd/systemd")
        poll(lambda: b.sh("systemctl is-system-running", check=False).strip() in ("running", "degraded"),
             timeout=60, what="systemd in the container to finish booting")
        yield b
    finally:
        subprocess.run(["docker", "-H", host, "rm", "-f", NAME], capture_output=True, timeout=120)
        docker_engine.stop(root / "docker")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def phase3(box: Box) -> dict:
    """Server and agent started by the library through systemctl; the agent attests by the token that
    agent.conf's join_token_file names."""
    got = box.probe("up")
    print(json.dumps(got))
    assert got["ok"], got
    return got


def test_start_through_systemctl_main_pid_checked(phase3: dict) -> None:
    units = phase3["units"]
    assert units["spire-server.service"] == {"active": True, "main_pid": phase3["server_pid"]}
    assert units["spire-agent.service"] == {"active": True, "main_pid": phase3["agent_pid"]}
    assert phase3["agent_id"].startswith("spiffe://example.org/spire/agent/join_token/")
    assert "-joinTokenFile" not in " ".join(phase3["agent_argv"])     # the unit reads agent.conf only
    assert phase3["token_file_mode"] == "0o600" and not phase3["token_on_a_command_line"]
    assert not phase3["entry_failed"]


def test_stop_start_through_systemctl(box: Box, phase3: dict) -> None:
    got = box.probe("restart")
    print(json.dumps(got))
    assert got["ok"], got
    assert got["stopped"] == got["before"] and got["after_stop"] == {"active": False, "proc": False}
    assert got["again"] == got["main_pid"] == got["node_agent_proc"] != got["before"]
    assert got["identity"] == phase3["agent_id"]          # the cached SVID: no new token needed


def test_a_new_join_token_reaches_the_unit_through_agent_conf(box: Box, phase3: dict) -> None:
    got = box.probe("reattest")
    print(json.dumps(got))
    assert got["ok"], got
    assert got["new"] != got["old"] and "/join_token/" in got["new"], got
    assert got["pid"] == got["main_pid"] and got["token_file_holds_new"]


def test_logs_come_from_the_journal(box: Box, phase3: dict) -> None:
    got = box.probe("logs")
    assert got["ok"], got
    assert got["agent_attested"] and got["server_attested"], got
    assert got["source"] == "journalctl -u spire-agent.service" and not got["agent_log_file_exists"]


def test_pid_mode_refuses_beside_a_unit(box: Box, phase3: dict) -> None:
    got = box.probe("refuse_pid_mode", "target-pid.toml")
    print(json.dumps(got))
    assert got["ok"], got
    assert 'set unit = "spire-server.service" in [server]' in got["check"], got   # the first it meets
    for action in ("stop_agent", "start_agent"):
        assert got[action] and "spire-agent.service" in got[action] and 'unit = "spire-agent.service"' in got[action], got
    for action in ("stop_server", "start_server"):
        assert got[action] and 'unit = "spire-server.service"' in got[action], got
    assert got["agent_main_pid_after"] == got["agent_main_pid_before"] != 0
    assert got["agents_running"] == 1


SECRET = "0d1f5c2e-dead-beef-cafe-1234567890ab"


@pytest.mark.parametrize("flag, value", [("-joinTokenFile", f"{SRV}/agent/join_token"), ("-joinToken", SECRET)])
def test_refuses_a_unit_that_passes_a_join_token(box: Box, phase3: dict, flag: str, value: str) -> None:
    box.sh("mkdir -p /run/systemd/system/spire-agent.service.d && printf '%s\\n' '[Service]' 'ExecStart=' "
           f"'ExecStart={SPIRE_BIN}/spire-agent run -config {SRV}/agent/agent.conf {flag} {value}' "
           "> /run/systemd/system/spire-agent.service.d/token.conf && systemctl daemon-reload")
    try:
        got = box.probe("refuse_exec_start")
    finally:
        box.sh("rm -rf /run/systemd/system/spire-agent.service.d && systemctl daemon-reload")
    assert got["ok"], got
    for action in ("check", "start_agent", "migration_preflight"):
        assert f"spire-agent.service starts spire-agent with {flag}\n" in got[action], got
        assert SECRET not in got[action] and "ExecStart" in got[action]
    assert got["configs_unchanged"]


def test_a_unit_is_not_started_beside_a_server_the_suite_started(box: Box, phase3: dict) -> None:
    got = box.probe("stray")
    print(json.dumps(got))
    assert got["ok"], got
    assert f"spire-server pid {got['stray_pid']} runs outside spire-server.service" in got["start_unit"], got
    assert not got["unit_active_while_stray"] and got["stray_unit"] is None
    assert got["unit_pid"] == got["main_pid"] != got["stray_pid"]


def test_a_unit_that_fails_names_its_journal(box: Box, phase3: dict) -> None:
    got = box.probe("bad_unit", "target-broken.toml")
    print(json.dumps(got))
    assert got["ok"], got
    err = got["start_server"]
    assert err and "spire-broken.service (spire-server) did not start" in err, got
    assert "journalctl -u spire-broken.service" in err and "notAFlag" in err, err   # the journal's own lines
    assert got["seconds"] < 30


def test_a_unit_running_another_config_is_refused(box: Box, phase3: dict) -> None:
    try:
        got = box.probe("bad_unit", "target-bad.toml")
    finally:
        box.sh("systemctl stop spire-bad.service")
    assert got["ok"], got
    assert "spire-bad.service runs spire-server with another config" in got["start_server"], got


def test_systemd_workload_runtime(box: Box, phase3: dict) -> None:
    got = box.probe("workload")
    print(json.dumps(got))
    assert got["ok"], got
    assert got["plan"] and got["plan_after"] == []
    [(name, pid, state, phase)] = got["instances"]
    assert (name, state, phase) == ("mtls-app.service", "running", 3) and int(pid) == got["main_pid"]
    assert "VERIFIED" in got["verified_line"]
    assert got["check"]["verified"] is True and got["check"]["exit_code"] == 0, got["check"]
    assert got["check"]["spiffe_id"] == "spiffe://example.org/k8s-workload"
    assert got["log_lines_since"] > 0 and "unix:uid:1000" in got["selectors"]
