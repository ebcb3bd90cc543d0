"""Where a fleet lab's parts live: under the lab root, and inside each host at the guide's paths."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..layout import _below

SERVER = "server"
#: Inside every host: the guide's default paths (the target description needs no path key).
OPT_SPIRE = Path("/opt/spire")
SERVER_CONF = OPT_SPIRE / "conf/server/server.conf"
AGENT_CONF = OPT_SPIRE / "conf/agent/agent.conf"
JOIN_TOKEN = OPT_SPIRE / "conf/agent/join-token"
BOOTSTRAP_BUNDLE = OPT_SPIRE / "conf/agent/bootstrap.crt"
SERVER_SOCKET = Path("/tmp/spire-server/private/api.sock")
AGENT_SOCKET = Path("/tmp/spire-agent/public/api.sock")
TPM_DEVICE = Path("/dev/tpmrm0")
TPM_STATE = Path("/var/lib/swtpm")
TARGET = Path("/etc/spire-migration/target.toml")
SERVER_PORT = 8081
APP_PORT = 9443
WORKLOAD_UID = 1001
WORKLOAD_USER = "mtls"


@dataclass(frozen=True)
class Host:
    """One lab host: its name (= hostname), role, address on the lab network, folders outside."""

    root: Path
    name: str
    ip: str

    @property
    def role(self) -> str:
        return "server" if self.name == SERVER else "agent"

    @property
    def dir(self) -> Path:
        return self.root / "hosts" / self.name

    opt_spire = _below("dir", "opt-spire")      # -> /opt/spire
    tpm_dir = _below("dir", "tpm")              # -> /var/lib/swtpm (agent hosts)
    etc_ssh = _below("dir", "etc-ssh")          # -> /etc/ssh (read-only)
    etc_target = _below("dir", "etc-spire-migration")   # -> /etc/spire-migration

    def outside(self, inside: Path) -> Path:
        """The file outside the host that is ``inside`` (a path under /opt/spire) within it."""
        return self.opt_spire / Path(inside).relative_to(OPT_SPIRE)


@dataclass(frozen=True)
class FleetLayout:
    """The fleet's shared parts: state, inventory, SSH client key, known_hosts."""

    root: Path

    fleet_dir = _below("root", "fleet")
    hosts_json = _below("fleet_dir", "hosts.json")
    inventory = _below("fleet_dir", "inventory.ini")
    ssh_dir = _below("root", "ssh")
    client_key = _below("ssh_dir", "id_ed25519")
    known_hosts = _below("ssh_dir", "known_hosts")

    @property
    def tag(self) -> str:
        """8 hex digits naming this lab's containers, network and bridge (two roots never share)."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:8]

    @property
    def network(self) -> str:
        return f"fleet-{self.tag}"

    @property
    def bridge(self) -> str:
        return f"spf{self.tag}"     # 11 bytes: Linux allows 15

    def container(self, name: str) -> str:
        return f"fleet-{self.tag}-{name}"

    def host(self, name: str, ip: str) -> Host:
        return Host(self.root, name, ip)
