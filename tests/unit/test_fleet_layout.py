"""The fleet lab's names, network choice, inventory, target files and image (lab/fleet/), without Docker."""

from __future__ import annotations

import configparser
import io
import ipaddress
import shlex
import tarfile
import tomllib
from pathlib import Path

from lab import configs
from lab.fleet import image, inventory, network, provision
from lab.fleet.layout import FleetLayout
from spire_migration.config.target import Target

ROOT = Path("/run/spire-lab/fleetlab-unit")


def test_names_derive_from_the_root_and_fit_linux_limits() -> None:
    a, b = FleetLayout(ROOT), FleetLayout(ROOT.with_name("fleetlab-other"))
    assert a.tag != b.tag and a.network != b.network and a.container("node-1") != b.container("node-1")
    assert len(a.bridge) <= 15 and a.bridge.startswith("spf")
    host = a.host("node-2", "10.231.5.12")
    assert host.role == "agent" and a.host("server", "10.231.5.10").role == "server"
    assert host.outside(Path("/opt/spire/conf/agent/agent.conf")) == ROOT / "hosts/node-2/opt-spire/conf/agent/agent.conf"


def test_the_subnet_avoids_every_routed_network(monkeypatch) -> None:
    lay = FleetLayout(ROOT)
    monkeypatch.setattr(network, "_taken", lambda: [])
    free = network.choose_subnet(lay)
    assert free.prefixlen == 24 and free.subnet_of(network.POOL)
    monkeypatch.setattr(network, "_taken", lambda: [free, ipaddress.ip_network("0.0.0.0/0")])
    other = network.choose_subnet(lay)
    assert other != free and other.subnet_of(network.POOL)   # a default route is no reason to skip


def test_inventory_has_both_groups_and_ssh_settings_per_host() -> None:
    lay = FleetLayout(ROOT)
    hosts = [{"name": "server", "ip": "10.231.5.10", "role": "server"},
             {"name": "node-1", "ip": "10.231.5.11", "role": "agent"},
             {"name": "node-2", "ip": "10.231.5.12", "role": "agent"}]
    text = inventory.inventory_ini(lay, hosts, "/work/x/.venv/bin/python")
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("\n",))
    parser.optionxform = str   # host lines as written (Ansible reads them so)
    parser.read_string(text)
    assert parser.sections() == ["spire_servers", "spire_agents"]
    assert [k.split()[0] for k in parser["spire_agents"]] == ["node-1", "node-2"]
    line = next(k for k in parser["spire_agents"] if k.startswith("node-2 "))
    words = dict(w.split("=", 1) for w in shlex.split(line)[1:])
    assert words["ansible_host"] == "10.231.5.12" and words["ansible_user"] == "root"
    assert words["ansible_connection"] == "ssh" and words["ansible_python_interpreter"] == "/work/x/.venv/bin/python"
    assert words["ansible_ssh_private_key_file"] == str(lay.client_key)
    assert words["spire_target"] == "/etc/spire-migration/target.toml"
    assert words["spire_migration"] == "/work/x/.venv/bin/spire-migration"
    assert f"UserKnownHostsFile={lay.known_hosts}" in words["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in words["ansible_ssh_common_args"]


def test_targets_hold_the_guides_paths_and_the_systemd_units() -> None:
    lay = FleetLayout(ROOT)
    for name, ip in (("server", "10.231.5.10"), ("node-1", "10.231.5.11")):
        t = Target.from_dict(tomllib.loads(provision.target_toml(lay.host(name, ip))))
        assert t.node == name and t.server.config == Path("/opt/spire/conf/server/server.conf")
        assert (t.server.unit if name == "server" else t.agent.unit).endswith(".service")
    agent = tomllib.loads(provision.target_toml(lay.host("node-1", "10.231.5.11")))
    assert agent["tpm"]["tcti"] == "swtpm:path=/dev/tpmrm0"
    assert agent["workload"] == {"runtime": "systemd", "unit": "mtls-app.service", "selectors": ["unix:uid:1001"]}
    assert agent["agent"] == {"unit": "spire-agent.service"}


def test_agent_conf_reads_its_token_from_a_file_and_attests_workloads_by_uid() -> None:
    conf = configs.agent_conf_at(Path("/opt/spire/data/agent"), Path("/tmp/spire-agent/public/api.sock"),
                                 Path("/opt/spire/conf/agent/bootstrap.crt"), "example.org", 8081,
                                 configs.UNIX_ATTESTOR, server_address="10.231.5.10",
                                 join_token_file=Path("/opt/spire/conf/agent/join-token"))
    assert 'join_token_file = "/opt/spire/conf/agent/join-token"' in conf
    assert 'server_address = "10.231.5.10"' in conf and 'WorkloadAttestor "unix"' in conf
    assert "docker" not in conf.split("plugins")[1]
    server = configs.server_conf_at(Path("/tmp/spire-server/private/api.sock"), Path("/opt/spire/data/server"),
                                    "example.org", 8081, bind_address="10.231.5.10")
    assert 'bind_address = "10.231.5.10"' in server and "/opt/spire/data/server/datastore.sqlite3" in server


def test_image_units_run_spire_exactly_as_the_guide_and_mask_what_fails_in_a_container() -> None:
    units = image.units("/work/x/.venv/bin/python", "/work/x/workload/mtls_app.py")
    assert "ExecStart=/opt/spire/bin/spire-agent run -config /opt/spire/conf/agent/agent.conf\n" in units[
        "spire-agent.service"]
    assert "ExecStart=/opt/spire/bin/spire-server run -config /opt/spire/conf/server/server.conf\n" in units[
        "spire-server.service"]
    assert "User=mtls\n" in units["mtls-app.service"] and "demo\n" in units["mtls-app.service"]
    assert "path=/dev/tpmrm0 " in units["swtpm.service"] and "path=/dev/tpmrm0.ctrl " in units["swtpm.service"]
    tar_bytes = image.rootfs("/work/x/.venv/bin/python", "/work/x/workload/mtls_app.py")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile(members["etc/passwd"]).read().decode()
    assert "mtls:x:1001:1001:" in passwd
    for masked in ("docker.service", "systemd-networkd.service", "ssh.socket", "systemd-firstboot.service"):
        assert members[f"etc/systemd/system/{masked}"].linkname == "/dev/null"
    assert members["var/run"].linkname == "../run"
    assert image.digest(tar_bytes) == image.digest(image.rootfs("/work/x/.venv/bin/python",
                                                                "/work/x/workload/mtls_app.py"))
    assert image.digest(tar_bytes) != image.digest(image.rootfs("/work/y/.venv/bin/python",
                                                                "/work/x/workload/mtls_app.py"))
