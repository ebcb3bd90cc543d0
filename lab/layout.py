"""Where everything of one lab lives: all of it under one root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("SPIRE_LAB_ROOT", "/tmp/spire-lab"))


@dataclass(frozen=True)
class Node:
    """One agent node: its swtpm, DevID, agent config, data and sockets."""

    root: Path
    name: str

    @property
    def dir(self) -> Path:
        return self.root / "nodes" / self.name

    @property
    def tpm_dir(self) -> Path:
        return self.dir / "tpm"

    @property
    def swtpm_sock(self) -> Path:
        return self.tpm_dir / "swtpm.sock"

    @property
    def conf_dir(self) -> Path:
        return self.dir / "conf"

    @property
    def agent_conf(self) -> Path:
        return self.conf_dir / "agent.conf"

    @property
    def agent_data(self) -> Path:
        return self.dir / "data"

    @property
    def agent_socket(self) -> Path:
        return self.dir / "public" / "api.sock"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def agent_pid(self) -> Path:
        return self.dir / "agent.pid"

    @property
    def devid_dir(self) -> Path:
        return self.conf_dir / "devid"


@dataclass(frozen=True)
class Layout:
    """The lab root and the paths of the shared parts (server, CAs, dockerd)."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "lab.json"

    @property
    def target(self) -> Path:
        return self.root / "target.toml"

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def server_conf(self) -> Path:
        return self.server_dir / "conf" / "server.conf"

    @property
    def server_data(self) -> Path:
        return self.server_dir / "data"

    @property
    def server_socket(self) -> Path:
        return self.server_dir / "private" / "api.sock"

    @property
    def server_log(self) -> Path:
        return self.server_dir / "server.log"

    @property
    def server_pid(self) -> Path:
        return self.server_dir / "server.pid"

    @property
    def postgres_dir(self) -> Path:
        """The server's PostgreSQL cluster (``lab up --datastore postgres``)."""
        return self.server_dir / "postgres"

    @property
    def bootstrap_bundle(self) -> Path:
        return self.server_dir / "bootstrap-bundle.pem"

    @property
    def devid_ca_bundle(self) -> Path:
        return self.server_dir / "conf" / "devid-cacert.pem"

    @property
    def endorsement_ca_bundle(self) -> Path:
        return self.server_dir / "conf" / "endorsement-cacert.pem"

    @property
    def ek_ca_dir(self) -> Path:
        return self.root / "ca" / "endorsement"

    @property
    def devid_ca_dir(self) -> Path:
        return self.root / "ca" / "devid"

    @property
    def docker_dir(self) -> Path:
        return self.root / "docker"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_dir / 'docker.sock'}"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def node(self, name: str) -> Node:
        return Node(self.root, name)
