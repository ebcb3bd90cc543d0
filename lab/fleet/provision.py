"""What each host holds before its container starts, written from outside into its folders.

Agent hosts: a swtpm state with an EK certificate from the lab's endorsement CA and a DevID
key and certificate from the lab's DevID CA (made against a temporary swtpm on the machine,
stopped by pid afterwards), the DevID files at the guide's /opt/spire/conf/agent/devid.*.
Server host: both CAs at the guide's /opt/spire/conf/server/{devid,endorsement}-cacert.pem.
Every host: sshd's host key and config (root by key only, on its lab address only), the lab's
client key authorized, and its target description at /etc/spire-migration/target.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from spire_migration.fileio import write_file

from .. import configs, swtpm
from ..devid import devid_ca, provision_devid
from ..layout import Layout
from .layout import (AGENT_CONF, AGENT_SOCKET, BOOTSTRAP_BUNDLE, JOIN_TOKEN, OPT_SPIRE, SERVER_CONF,
                     SERVER_PORT, SERVER_SOCKET, TPM_DEVICE, WORKLOAD_UID, FleetLayout, Host)

TRUST_DOMAIN = "example.org"
SERVER_DATA = OPT_SPIRE / "data/server"
AGENT_DATA = OPT_SPIRE / "data/agent"
DEVID_CA = OPT_SPIRE / "conf/server/devid-cacert.pem"
ENDORSEMENT_CA = OPT_SPIRE / "conf/server/endorsement-cacert.pem"
_SETUP_LOCK = threading.Lock()   # swtpm_setup: one at a time against the shared endorsement CA


def folders(host: Host) -> None:
    """The host's folders outside: /opt/spire (conf, data), /etc/ssh, /etc/spire-migration."""
    conf = "server" if host.role == "server" else "agent"
    for d in (host.opt_spire, host.opt_spire / "conf", host.opt_spire / "conf" / conf,
              host.opt_spire / "data", host.opt_spire / "data" / conf, host.opt_spire / "bin",
              host.etc_ssh, host.etc_target):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    os.chmod(host.opt_spire / "data" / conf, 0o700)


def cas(root: Path) -> None:
    """Create the lab's DevID CA once, before hosts are provisioned in parallel."""
    Layout(root).devid_ca_dir.mkdir(parents=True, exist_ok=True)
    devid_ca(Layout(root).devid_ca_dir)


def tpm(host: Host) -> None:
    """The host's TPM: EK + EK certificate, then a DevID in it (what a hardware installer provides)."""
    lay = Layout(host.root)
    with _SETUP_LOCK:
        swtpm.provision(host.tpm_dir, lay.ek_ca_dir)
    swtpm.start(host.tpm_dir)
    try:
        provision_devid(swtpm.sock_path(host.tpm_dir), host.outside(AGENT_CONF.parent), lay.devid_ca_dir,
                        f"{host.name}.{TRUST_DOMAIN}")
    finally:
        swtpm.stop(host.tpm_dir)


def server_files(server: Host) -> None:
    """server.conf (bound to the host's lab address) and the two CAs the TPM attestors will trust."""
    lay = Layout(server.root)
    write_file(server.outside(SERVER_CONF),
               configs.server_conf_at(SERVER_SOCKET, SERVER_DATA, TRUST_DOMAIN, SERVER_PORT,
                                      bind_address=server.ip), mode=0o644)
    shutil.copyfile(lay.devid_ca_dir / "devid-ca-cert.pem", server.outside(DEVID_CA))
    shutil.copyfile(swtpm.endorsement_ca_path(lay.ek_ca_dir), server.outside(ENDORSEMENT_CA))


def agent_files(agent: Host, server_ip: str, bundle_pem: str, token: str) -> None:
    """agent.conf (join token by join_token_file), the bootstrap bundle, the 0600 token file."""
    write_file(agent.outside(BOOTSTRAP_BUNDLE), bundle_pem, mode=0o644)
    write_file(agent.outside(JOIN_TOKEN), token + "\n", mode=0o600)
    write_file(agent.outside(AGENT_CONF),
               configs.agent_conf_at(AGENT_DATA, AGENT_SOCKET, BOOTSTRAP_BUNDLE, TRUST_DOMAIN, SERVER_PORT,
                                     configs.UNIX_ATTESTOR, server_address=server_ip,
                                     join_token_file=JOIN_TOKEN), mode=0o644)


def target_toml(host: Host) -> str:
    """The host's target description: the guide's defaults, and the lines this lab needs
    (SPIRE and the workload under systemd, the swtpm socket at the guide's device path)."""
    lines = [f"# Target description of lab host {host.name} (written by `python -m lab up --fleet`).",
             "# Every path is the guide's default.", f'node = "{host.name}"', ""]
    if host.role == "server":
        lines += ["[server]", 'unit = "spire-server.service"', ""]
    else:
        lines += ["[agent]", 'unit = "spire-agent.service"', "",
                  "[tpm]", f'tcti = "swtpm:path={TPM_DEVICE}"', "",
                  "[workload]", 'runtime = "systemd"', 'unit = "mtls-app.service"',
                  f'selectors = ["unix:uid:{WORKLOAD_UID}"]', ""]
    return "\n".join(lines)


def write_target(host: Host) -> None:
    write_file(host.etc_target / "target.toml", target_toml(host), mode=0o644)


def client_key(lay: FleetLayout) -> Path:
    """The lab's SSH client key (0600), made once."""
    lay.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not lay.client_key.exists():
        _keygen(lay.client_key, f"fleet-lab@{lay.tag}")
    return lay.client_key


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, text=True)


def sshd(lay: FleetLayout, host: Host) -> str:
    """The host's sshd: host key, config, the lab's key authorized for root. Returns its
    known_hosts line."""
    key = host.etc_ssh / "ssh_host_ed25519_key"
    if not key.exists():
        _keygen(key, f"{host.name}-host")
    auth = host.etc_ssh / "authorized_keys"
    auth.mkdir(mode=0o755, exist_ok=True)
    write_file(auth / "root", lay.client_key.with_suffix(".pub").read_text(), mode=0o644)
    write_file(host.etc_ssh / "sshd_config", f"""# sshd of lab host {host.name}: its lab address only, root by key only.
ListenAddress {host.ip}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
""", mode=0o644)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f"{host.ip} {kind} {blob}\n"
