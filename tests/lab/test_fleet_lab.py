"""`python -m lab up --fleet 2`: real hosts (containers with systemd), each its own SPIRE, TPM, workload, sshd.

One fleet for the module (about 15 s up once SPIRE is cached); the last test takes it down and
proves nothing of it is left.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from lab.docker_engine import mounts_under
from lab.fleet import hosts, lifecycle, provision
from lab.fleet.docker import Docker
from lab.fleet.layout import FleetLayout
from lab.layout import Layout, private_base
from spire_migration.config.target import Target
from spire_migration.retry import poll

pytestmark = pytest.mark.lab
PROJECT = Path(__file__).resolve().parents[2]


class Fleet:
    def __init__(self, root: Path, printed: str) -> None:
        self.root, self.printed = root, printed
        self.lay = FleetLayout(root)
        self.state = json.loads(self.lay.hosts_json.read_text())
        self.docker = Docker(Layout(root).docker_host)

    def hosts(self, role: str | None = None) -> list[dict]:
        return [h for h in self.state["hosts"] if role in (None, h["role"])]

    def exec(self, host: dict, *argv: str, user: str | None = None) -> subprocess.CompletedProcess:
        return self.docker.exec(host["container"], *argv, check=False, user=user)


def _lab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="fleetlab-", dir=private_base()))
    try:
        up = _lab("up", "--fleet", "2", "--root", str(root))
        assert up.returncode == 0, up.stderr[-3000:]
        yield Fleet(root, up.stdout)
    finally:
        _lab("down", "--root", str(root), "--purge")


def test_up_prints_the_inventory_last_with_both_groups(fleet):
    assert fleet.printed.strip().splitlines()[-1] == str(fleet.lay.inventory)
    text = fleet.lay.inventory.read_text()
    groups = {g: [line.split()[0] for line in body.strip().splitlines() if line and not line.startswith("#")]
              for g, body in (part.split("]", 1) for part in text.split("[")[1:])}
    assert groups == {"spire_servers": ["server"], "spire_agents": ["node-1", "node-2"]}
    for h in fleet.hosts():
        line = next(l for l in text.splitlines() if l.startswith(h["name"] + " "))
        assert f"ansible_host={h['ip']}" in line and "ansible_user=root" in line
        assert f"ansible_ssh_private_key_file={fleet.lay.client_key}" in line
        assert "spire_target=/etc/spire-migration/target.toml" in line
    assert oct(fleet.lay.client_key.stat().st_mode & 0o777) == "0o600"


def test_every_agent_host_runs_spire_agent_under_systemd_at_the_guides_paths(fleet):
    for h in fleet.hosts("agent"):
        assert fleet.exec(h, "systemctl", "is-system-running").stdout.strip() == "running"
        for unit in ("swtpm.service", "spire-agent.service", "mtls-app.service", "ssh.service"):
            assert fleet.exec(h, "systemctl", "is-active", unit).stdout.strip() == "active", (h["name"], unit)
        pid = fleet.exec(h, "systemctl", "show", "-p", "MainPID", "--value", "spire-agent.service").stdout.strip()
        argv = fleet.exec(h, "cat", f"/proc/{pid}/cmdline").stdout.split("\0")[:-1]
        assert argv == ["/opt/spire/bin/spire-agent", "run", "-config", "/opt/spire/conf/agent/agent.conf"]
        conf = fleet.exec(h, "cat", "/opt/spire/conf/agent/agent.conf").stdout
        assert 'join_token_file = "/opt/spire/conf/agent/join-token"' in conf
        assert f'server_address = "{fleet.hosts("server")[0]["ip"]}"' in conf
        assert fleet.exec(h, "stat", "-c", "%a %U", "/opt/spire/conf/agent/join-token").stdout.split() == ["600", "root"]
        assert fleet.exec(h, "test", "-S", "/dev/tpmrm0").returncode == 0
        for f in ("devid.crt.pem", "devid.priv", "devid.pub"):
            assert fleet.exec(h, "test", "-s", f"/opt/spire/conf/agent/{f}").returncode == 0, f


TPM_PROOF = """
from pathlib import Path
from spire_migration.config.target import TPMSpec
from spire_migration.node import tpm
spec = TPMSpec(device=Path("/dev/tpmrm0"), tcti="swtpm:path=/dev/tpmrm0")
info = tpm.probe(spec)
assert info.ek_cert_der and info.ek_matches_cert, info
d = Path("/opt/spire/conf/agent")
tpm.check_devid_matches_tpm(spec, d / "devid.crt.pem", d / "devid.pub", d / "devid.priv")
print(info.ek_cert_der.hex())
"""


def test_each_agent_hosts_own_tpm_holds_its_ek_certificate_and_devid(fleet):
    """Phase 4's hardware, checked inside each host with the suite's own TPM code: the EK certificate
    (chaining to the endorsement CA the server host trusts) and the DevID key load in that host's TPM."""
    from spire_migration.node.tpm import ek_cert_chains_to
    server = fleet.lay.host("server", fleet.hosts("server")[0]["ip"])
    ek_certs = set()
    for h in fleet.hosts("agent"):
        out = fleet.exec(h, hosts.venv_python(), "-c", TPM_PROOF)
        assert out.returncode == 0, out.stderr[-2000:]
        ek = bytes.fromhex(out.stdout.strip())
        assert ek_cert_chains_to(ek, server.outside(Path("/opt/spire/conf/server/endorsement-cacert.pem")))
        ek_certs.add(ek)
    assert len(ek_certs) == 2       # each host its own TPM


def test_the_join_token_is_on_no_command_line(fleet):
    for h in fleet.hosts("agent"):
        token = (fleet.lay.host(h["name"], h["ip"]).opt_spire / "conf/agent/join-token").read_text().strip()
        assert len(token) > 20
        cmdlines = fleet.exec(h, "sh", "-c", "cat /proc/[0-9]*/cmdline").stdout
        assert token not in cmdlines
        # SPIRE's own log names the agent by its ID, which holds the (then spent) token: the only place
        journal = fleet.exec(h, "journalctl", "--no-pager").stdout
        assert token not in journal.replace(f"spire/agent/join_token/{token}", "spire/agent/join_token/<id>")


def test_the_server_lists_two_join_token_agents(fleet):
    server = fleet.hosts("server")[0]
    out = fleet.exec(server, "/opt/spire/bin/spire-server", "agent", "list", "-output", "json")
    assert out.returncode == 0, out.stderr
    agents = json.loads(out.stdout)["agents"]
    assert sorted(a["attestation_type"] for a in agents) == ["join_token", "join_token"]
    pid = fleet.exec(server, "systemctl", "show", "-p", "MainPID", "--value", "spire-server.service").stdout.strip()
    argv = fleet.exec(server, "cat", f"/proc/{pid}/cmdline").stdout.split("\0")[:-1]
    assert argv == ["/opt/spire/bin/spire-server", "run", "-config", "/opt/spire/conf/server/server.conf"]
    for ca in ("devid-cacert.pem", "endorsement-cacert.pem"):
        assert "BEGIN CERTIFICATE" in fleet.exec(server, "cat", f"/opt/spire/conf/server/{ca}").stdout


def test_each_workload_is_verified_under_its_own_agent(fleet):
    server = fleet.hosts("server")[0]
    entries = json.loads(fleet.exec(server, "/opt/spire/bin/spire-server", "entry", "show",
                                    "-output", "json").stdout)["entries"]
    workloads = [e for e in entries if e["spiffe_id"]["path"] == "/k8s-workload"]
    assert len({e["parent_id"]["path"] for e in workloads}) == 2
    assert all(e["parent_id"]["path"].startswith("/spire/agent/join_token/") for e in workloads)
    assert all([f"{s['type']}:{s['value']}" for s in e["selectors"]] == ["unix:uid:1001"] for e in workloads)
    for h in fleet.hosts("agent"):
        log = fleet.exec(h, "journalctl", "-u", "mtls-app.service", "--no-pager", "-o", "cat").stdout
        assert "Successfully fetched SVIDs: spiffe_id=spiffe://example.org/k8s-workload" in log, h["name"]
        assert "VERIFIED" in log, h["name"]
        pid = fleet.exec(h, "systemctl", "show", "-p", "MainPID", "--value", "mtls-app.service").stdout.strip()
        assert fleet.exec(h, "stat", "-c", "%u", f"/proc/{pid}").stdout.strip() == "1001"


def test_ssh_reaches_every_host_as_root_by_key_only(fleet):
    for h in fleet.hosts():
        ok = subprocess.run(lifecycle.ssh_argv(fleet.lay, h, "hostname"), capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and ok.stdout.strip() == h["name"], ok.stderr
    h = fleet.hosts("agent")[0]
    argv = lifecycle.ssh_argv(fleet.lay, h, "true")
    no_key = argv[:1] + ["-o", "PubkeyAuthentication=no"] + argv[1:]
    refused = subprocess.run(no_key, capture_output=True, text=True, timeout=30)
    # the server offers public keys only: no password, no keyboard-interactive
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr, refused.stderr


def test_suite_runs_inside_a_host_and_its_target_holds_the_guides_defaults(fleet):
    h = fleet.hosts("agent")[0]
    version = fleet.exec(h, str(Path(hosts.venv_python()).parent / "spire-migration"), "--help")
    assert version.returncode == 0, version.stderr
    assert fleet.exec(h, "stat", "-c", "%a %U", "/etc/spire-migration", "/etc/spire-migration/target.toml"
                      ).stdout.split() == ["755", "root", "644", "root"]
    text = fleet.exec(h, "cat", "/etc/spire-migration/target.toml").stdout
    assert tomllib.loads(text)["workload"]["runtime"] == "systemd"
    t = Target.from_dict(tomllib.loads(text))
    assert (t.node, t.tpm.tcti, t.workload.selectors) == (h["name"], "swtpm:path=/dev/tpmrm0", ["unix:uid:1001"])
    assert (t.agent.config, t.agent.socket, t.tpm.device) == (
        Path("/opt/spire/conf/agent/agent.conf"), Path("/tmp/spire-agent/public/api.sock"), Path("/dev/tpmrm0"))
    assert (t.agent.unit, t.workload.runtime, t.workload.unit) == ("spire-agent.service", "systemd", "mtls-app.service")


def test_hosts_are_isolated_from_each_other_and_from_outside(fleet):
    node1, node2 = fleet.hosts("agent")
    denied = fleet.exec(node1, "/opt/spire/bin/spire-server", "agent", "list")
    assert denied.returncode != 0 and "no such file" in denied.stderr
    assert fleet.exec(node1, "test", "-e", "/tmp/spire-server/private/api.sock").returncode == 1
    server = fleet.hosts("server")[0]
    assert fleet.exec(server, "test", "-S", "/tmp/spire-server/private/api.sock").returncode == 0
    assert fleet.exec(node2, "test", "-S", "/tmp/spire-agent/public/api.sock").returncode == 0
    probe = ("import socket,sys\ns=socket.socket(); s.settimeout(1.5)\n"
             "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\nexcept OSError as e: print('closed', e)\n")
    py = hosts.venv_python()
    assert fleet.exec(node1, py, "-c", probe, server["ip"], "8081").stdout.startswith("open")
    with socket.create_server((fleet.state["machine_ip"], 0)) as listener:    # the machine, on the lab network
        port = str(listener.getsockname()[1])
        assert fleet.exec(node1, py, "-c", probe, fleet.state["machine_ip"], port).stdout.startswith("open")
    # The hosts' default route leads to the network's gateway, an address nothing holds: nothing
    # leaves the /24 (this machine forwards IPv4).
    routes = fleet.exec(node1, "ip", "-4", "route").stdout.splitlines()
    gateway = str(ipaddress.ip_network(fleet.state["subnet"]).network_address + 1)
    assert routes[0].startswith(f"default via {gateway} ") and len(routes) == 2, routes
    assert f"inet {gateway}/" not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    assert fleet.exec(node1, py, "-c", probe, "192.0.2.1", "53").stdout.startswith("closed")


def test_an_agent_restarted_by_systemd_comes_back_as_the_same_agent(fleet):
    """What the migration does to a unit: restart it. The spent join token is not needed again."""
    server, h = fleet.hosts("server")[0], fleet.hosts("agent")[0]

    def agent_ids() -> list[str]:
        out = fleet.exec(server, "/opt/spire/bin/spire-server", "agent", "list", "-output", "json").stdout
        return sorted(a["id"]["path"] for a in json.loads(out)["agents"])
    before = agent_ids()
    old = fleet.exec(h, "systemctl", "show", "-p", "MainPID", "--value", "spire-agent.service").stdout.strip()
    assert fleet.exec(h, "systemctl", "restart", "spire-agent.service").returncode == 0
    new = fleet.exec(h, "systemctl", "show", "-p", "MainPID", "--value", "spire-agent.service").stdout.strip()
    assert new != old and new != "0"
    poll(lambda: fleet.exec(h, "/opt/spire/bin/spire-agent", "healthcheck").returncode == 0, timeout=60,
         what="spire-agent healthy after restart")
    assert agent_ids() == before


def test_status_names_every_host_and_its_memory(fleet):
    out = _lab("status", "--root", str(fleet.root))
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4 and all(" running, systemd running" in line for line in lines[1:]), out.stdout
    assert all(h["memory_bytes"] and h["memory_bytes"] < 512 * 2**20 for h in fleet.hosts())


def test_down_purge_leaves_no_container_network_mount_or_process(fleet):
    lifecycle.down(fleet.root, log=lambda m: None)
    assert fleet.docker.run("ps", "-aq").stdout.strip() == ""
    assert fleet.lay.network not in fleet.docker.run("network", "ls", "--format", "{{.Name}}").stdout.split()
    down = _lab("down", "--root", str(fleet.root), "--purge")
    assert down.returncode == 0, down.stderr
    assert not Path("/sys/class/net", fleet.lay.bridge).exists()
    assert not mounts_under(fleet.root) and not fleet.root.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(fleet.root) not in ps
