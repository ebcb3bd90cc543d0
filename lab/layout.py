"""Where everything of one lab lives: all of it under one root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The private folder (root, 0711) the labs live in: a lab's target files pass the suite's
#: ownership check (every folder above them root's, none writable by others, which /tmp is),
#: and the path is short, so the lab's unix socket paths stay far below 108 bytes.
PRIVATE_BASE = Path("/run/spire-lab")
DEFAULT_ROOT = Path(os.environ.get("SPIRE_LAB_ROOT", PRIVATE_BASE / "lab"))


def private_base() -> Path:
    """PRIVATE_BASE, root's and made 0711: nobody else may list it or write into it (a target below
    it passes the suite's ownership check), but a lab daemon run as another user (PostgreSQL as
    ``postgres``) may pass through it to its own folder."""
    PRIVATE_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(PRIVATE_BASE, 0o711)
    return PRIVATE_BASE


def _below(base: str, *parts: str) -> property:
    """A path of the layout: ``parts`` below its path ``base`` (``tpm_dir = _below("dir", "tpm")``)."""
    def path(self) -> Path:
        return Path(getattr(self, base), *parts)
    return property(path, doc=f"{base} / {'/'.join(parts)}")


@dataclass(frozen=True)
class Node:
    """One agent node: its swtpm, DevID, agent config, data and sockets."""

    root: Path
    name: str

    @property
    def dir(self) -> Path:
        return self.root / "nodes" / self.name

    tpm_dir = _below("dir", "tpm")
    swtpm_sock = _below("tpm_dir", "swtpm.sock")
    conf_dir = _below("dir", "conf")
    agent_conf = _below("conf_dir", "agent.conf")
    agent_data = _below("dir", "data")
    agent_socket = _below("dir", "public", "api.sock")
    agent_log = _below("dir", "agent.log")
    agent_pid = _below("dir", "agent.pid")
    devid_dir = _below("conf_dir", "devid")


@dataclass(frozen=True)
class Layout:
    """The lab root and the paths of the shared parts (server, CAs, dockerd)."""

    root: Path

    state = _below("root", "lab.json")
    target = _below("root", "target.toml")
    server_dir = _below("root", "server")
    server_conf = _below("server_dir", "conf", "server.conf")
    server_data = _below("server_dir", "data")
    server_socket = _below("server_dir", "private", "api.sock")
    server_log = _below("server_dir", "server.log")
    server_pid = _below("server_dir", "server.pid")
    postgres_dir = _below("server_dir", "postgres")  # the server's PostgreSQL cluster (--datastore postgres)
    bootstrap_bundle = _below("server_dir", "bootstrap-bundle.pem")
    devid_ca_bundle = _below("server_dir", "conf", "devid-cacert.pem")
    endorsement_ca_bundle = _below("server_dir", "conf", "endorsement-cacert.pem")
    ek_ca_dir = _below("root", "ca", "endorsement")
    devid_ca_dir = _below("root", "ca", "devid")
    docker_dir = _below("root", "docker")
    journal_dir = _below("root", "journal")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_dir / 'docker.sock'}"

    def node(self, name: str) -> Node:
        return Node(self.root, name)
