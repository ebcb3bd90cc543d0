"""The target description: the one file that says which node the suite works on.

A TOML file; every key has the migration guide's value as its default, so an
empty file describes the guide's node (/opt/spire/..., /dev/tpmrm0,
example.org, /var/run/docker.sock).

>>> t = Target.from_dict({"trust_domain": "example.org"})
>>> t.server.config
PosixPath('/opt/spire/conf/server/server.conf')
>>> t.tpm.device, t.attestor.profile, t.workload.runtime
(PosixPath('/dev/tpmrm0'), 'tpm_devid', 'docker')
>>> t.workload.spiffe_id
'spiffe://example.org/k8s-workload'
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spire_migration.errors import TargetError
from spire_migration.node.spiffe_ids import TPM_ATTESTORS, agent_id_prefix
from spire_migration.fsperm import check_trusted_path
from spire_migration.node.systemd import check_unit_name

PROFILES = TPM_ATTESTORS
RUNTIMES = ("docker", "kubernetes", "systemd")
NODE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def check_node_name(name: object) -> str:
    """A node name becomes a folder (journal) and a file name (``target-<name>.toml``).

    >>> check_node_name("node-1")
    'node-1'
    >>> check_node_name("../../etc/cron.d")
    Traceback (most recent call last):
    ...
    spire_migration.errors.TargetError: node name '../../etc/cron.d' is not allowed
      expected: lower-case letters, digits and '-', starting with a letter or digit ([a-z0-9][a-z0-9-]*)
      found:    '../../etc/cron.d'
      do:       name the node like a host name, e.g. node-1
    """
    if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
        raise TargetError(f"node name {name!r} is not allowed",
                          expected="lower-case letters, digits and '-', starting with a letter or digit "
                                   "([a-z0-9][a-z0-9-]*)",
                          found=repr(name), remedy="name the node like a host name, e.g. node-1")
    return name


@dataclass
class ServerSpec:
    """Where the SPIRE server lives and how it is run."""

    config: Path = Path("/opt/spire/conf/server/server.conf")
    socket: Path = Path("/tmp/spire-server/private/api.sock")
    data_dir: Path = Path("/opt/spire/data/server")
    log: Path = Path("/opt/spire/server.log")
    pid_file: Path = Path("/opt/spire/server.pid")
    bind_address: str = "127.0.0.1"
    bind_port: int = 8081
    #: The systemd unit that runs the server (e.g. "spire-server.service"): the suite then stops,
    #: starts and reads it only through systemctl and journalctl. Empty: the suite runs it (pid file).
    unit: str = ""


@dataclass
class AgentSpec:
    """Where the SPIRE agent lives and how it is run."""

    config: Path = Path("/opt/spire/conf/agent/agent.conf")
    socket: Path = Path("/tmp/spire-agent/public/api.sock")
    data_dir: Path = Path("/opt/spire/data/agent")
    log: Path = Path("/opt/spire/agent.log")
    pid_file: Path = Path("/opt/spire/agent.pid")
    user: str = "root"
    #: The systemd unit that runs the agent (e.g. "spire-agent.service"); empty: pid mode. The unit
    #: reads agent.conf only: its ExecStart must pass no -joinToken/-joinTokenFile (Phase 3 under
    #: systemd gives the token with agent.conf ``join_token_file``).
    unit: str = ""
    #: Phase 3 only: a 0600 file holding a join token, where this node's own start hands one to
    #: the agent. The suite never passes this file: it hands the agent a token in a fresh 0600
    #: file with -joinTokenFile (node/services.py start_agent); the issue 1 diagnosis reports
    #: it as a join token still given to the agent.
    join_token_file: Path | None = None


@dataclass
class TPMSpec:
    """The TPM the agent attests with: a character device or an swtpm socket."""

    device: Path = Path("/dev/tpmrm0")
    #: tpm2-tss TCTI; derived from ``device`` when empty.
    tcti: str = ""

    def tcti_config(self) -> tuple[str, str]:
        """(name, conf) for ``TCTILdr``: ``device:/dev/tpmrm0``, or ``swtpm:path=...`` when the
        path is a unix socket (an swtpm, wherever it is: SPIRE's go-tpm opens either kind).

        >>> TPMSpec().tcti_config(), TPMSpec(device=Path("/run/swtpm.sock")).tcti_config()
        (('device', '/dev/tpmrm0'), ('swtpm', 'path=/run/swtpm.sock'))
        """
        if self.tcti:
            spec = self.tcti
        elif str(self.device).startswith("/dev/") and not _is_socket(self.device):
            spec = f"device:{self.device}"
        else:
            spec = f"swtpm:path={self.device}"
        name, _, conf = spec.partition(":")
        return name, conf


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass
class AttestorSpec:
    """The Phase 4 node attestor and its inputs."""

    profile: str = "tpm_devid"
    # tpm_devid (built into SPIRE)
    devid_cert: Path = Path("/opt/spire/conf/agent/devid.crt.pem")
    devid_priv: Path = Path("/opt/spire/conf/agent/devid.priv")
    devid_pub: Path = Path("/opt/spire/conf/agent/devid.pub")
    devid_ca: Path = Path("/opt/spire/conf/server/devid-cacert.pem")
    endorsement_ca: Path = Path("/opt/spire/conf/server/endorsement-cacert.pem")
    # tpm (spire-tpm-plugin, external)
    plugin_cmd_server: Path = Path("/opt/spire/bin/tpm_attestor_server")
    plugin_cmd_agent: Path = Path("/opt/spire/bin/tpm_attestor_agent")
    plugin_checksum_server: str = ""
    plugin_checksum_agent: str = ""
    ca_path: Path = Path("/opt/spire/.data/certs")
    hash_path: Path | None = None
    #: Opt-in for the guide's "Option 2": a node alias built from TPM node selectors.
    node_alias: str = ""
    #: PCRs this node's registrations or policies depend on (hardening_3): their
    #: expected values must be recorded (``python -m spire_migration.checks.pcrs record``).
    pcr_bindings: list[int] = field(default_factory=list)
    #: The PCR bank those values are read from.
    pcr_bank: str = "sha256"


@dataclass
class WorkloadSpec:
    """The guide's workload and the runtime that runs it."""

    runtime: str = "docker"
    spiffe_id: str = ""
    selectors: list[str] = field(default_factory=lambda: [
        "docker:label:io.kubernetes.container.name:mtls-app",
        "docker:label:io.kubernetes.pod.namespace:default",
    ])
    docker_host: str = "unix:///var/run/docker.sock"
    #: docker label that marks the workload's containers.
    container_label: str = "io.kubernetes.container.name=mtls-app"
    kubeconfig: Path | None = None
    namespace: str = "default"
    deployment: str = "mtls-app"
    label_selector: str = "app=mtls-demo"
    manifest_phase4: Path = Path("workload/k8s/phase4/mtls-app.yaml")
    #: Workloads that must hold an SVID (pre_check_4); default: the one above.
    critical: list[str] = field(default_factory=list)
    #: Phase 3 Deployment manifest (kubernetes runtime; relative: to the project).
    manifest_phase3: Path = Path("workload/k8s/phase3/mtls-app.yaml")
    #: Image of the Python application (docker and kubernetes runtimes).
    image: str = "spire-migration/mtls-app:lab"
    #: 127.0.0.1 port the mTLS server listens on (host network).
    app_port: int = 9443
    #: SPIFFE ID each side authorizes on the other; empty: ``spiffe_id``.
    peer_id: str = ""
    #: Seconds between the client's exchanges.
    client_interval_s: float = 5.0
    #: Host Workload API socket given to the workload; empty: the agent's socket.
    agent_socket: Path | None = None
    #: Docker container names of the two sides.
    server_container: str = "mtls-server"
    client_container: str = "mtls-client"
    #: Extra read-only bind mounts "host[:container]" (a lab gives the host's Python this way).
    ro_mounts: list[str] = field(default_factory=list)
    #: Phase 4: give the workload the TPM device (the guide's optional mount; the app never opens it).
    mount_tpm: bool = False
    #: runtime "systemd": the service unit that runs the app (``mtls_app.py demo``).
    unit: str = "mtls-app.service"


@dataclass
class JournalSpec:
    """Where the journal, the lock and the backups go."""

    dir: Path = Path("/var/lib/spire-migration")
    allow_installs: bool = False


@dataclass
class Thresholds:
    """Limits the checks compare against."""

    svid_fetch_ms: float = 1000.0
    start_timeout_s: float = 60.0
    cert_expiry_days: int = 30


@dataclass
class Target:
    """One node (server + agent + TPM + workload) the suite works on."""

    trust_domain: str = "example.org"
    node: str = "node-1"
    bin_dir: Path = Path("/opt/spire/bin")
    server: ServerSpec = field(default_factory=ServerSpec)
    agent: AgentSpec = field(default_factory=AgentSpec)
    tpm: TPMSpec = field(default_factory=TPMSpec)
    attestor: AttestorSpec = field(default_factory=AttestorSpec)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    journal: JournalSpec = field(default_factory=JournalSpec)
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: Path | None = None

    def __post_init__(self) -> None:
        check_node_name(self.node)
        if not self.workload.spiffe_id:
            self.workload.spiffe_id = f"spiffe://{self.trust_domain}/k8s-workload"
        if not self.workload.critical:
            self.workload.critical = [self.workload.spiffe_id]

    @property
    def server_bin(self) -> Path:
        return self.bin_dir / "spire-server"

    @property
    def agent_bin(self) -> Path:
        return self.bin_dir / "spire-agent"

    @property
    def server_id(self) -> str:
        return f"spiffe://{self.trust_domain}/spire/server"

    def agent_id_prefix(self, attestor: str) -> str:
        return agent_id_prefix(self.trust_domain, attestor)

    @classmethod
    def load(cls, path: str | Path) -> "Target":
        """Read a target file; a missing, invalid or untrusted file is a :class:`TargetError`.

        The file decides what root changes, so it and every folder above it must be
        owned by root (or the user running the suite) and not writable by group or
        others (:func:`spire_migration.fsperm.check_trusted_path`).
        """
        path = Path(path)
        if not path.is_file():
            raise TargetError(f"target description {path} does not exist",
                              expected="a TOML file (see README: The target description)",
                              found="no such file", remedy="pass --target FILE")
        check_trusted_path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TargetError(f"target description {path} is not valid TOML",
                              expected="TOML", found=str(exc)) from exc
        target = cls.from_dict(data, base=path.parent)
        target.source = path.resolve()
        return target

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path | None = None) -> "Target":
        """Build a target from parsed TOML, checking every key and type."""
        sections = {"server": ServerSpec, "agent": AgentSpec, "tpm": TPMSpec,
                    "attestor": AttestorSpec, "workload": WorkloadSpec,
                    "journal": JournalSpec, "thresholds": Thresholds}
        kwargs: dict[str, Any] = {}
        top = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise TargetError(f"[{key}] must be a table", expected="a TOML table",
                                      found=type(value).__name__)
                kwargs[key] = _build(sections[key], value, key, base)
            elif key in top and key != "source" and key not in sections:
                kwargs[key] = _convert(top[key], value, key, base)
            else:
                raise TargetError(f"unknown key {key!r} in the target description",
                                  expected=f"one of {sorted(set(top) - {'source'})}", found=key)
        target = cls(**kwargs)
        if target.attestor.profile not in PROFILES:
            raise TargetError("unknown attestor profile", expected=" or ".join(PROFILES),
                              found=target.attestor.profile)
        if target.workload.runtime not in RUNTIMES:
            raise TargetError("unknown workload runtime", expected=" or ".join(RUNTIMES),
                              found=target.workload.runtime)
        for key, unit in (("server.unit", target.server.unit), ("agent.unit", target.agent.unit),
                          ("workload.unit", target.workload.unit)):
            check_unit_name(unit, key)
        return target

    # -- the node's conventions, one place each ------------------------------------------
    @property
    def journal_root(self) -> Path:
        """This node's journal directory, ``<journal.dir>/<node>``."""
        return self.journal.dir / self.node

    @staticmethod
    def file_name(node: str) -> str:
        """The file name of a node's target description: ``target-<node>.toml``."""
        return f"target-{node}.toml"

    def sibling(self, node: str) -> Path | None:
        """Where node *node*'s target description lives: next to this one (None without a file)."""
        return self.source.parent / Target.file_name(node) if self.source else None

    def siblings(self) -> list[Path]:
        """Every node's target description next to this one (``target-*.toml``), sorted."""
        return sorted(self.source.parent.glob(Target.file_name("*"))) if self.source else []


def _build(kind: type, values: dict[str, Any], section: str, base: Path | None) -> Any:
    known = {f.name: f for f in fields(kind)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise TargetError(f"unknown key {section}.{key} in the target description",
                              expected=f"one of {sorted(known)}", found=key)
        kwargs[key] = _convert(known[key], value, f"{section}.{key}", base)
    return kind(**kwargs)


def _convert(f: Any, value: Any, name: str, base: Path | None) -> Any:
    kind = str(f.type)
    if "Path" in kind:
        if not isinstance(value, str):
            raise TargetError(f"{name} must be a path string", expected="string",
                              found=repr(value))
        p = Path(value).expanduser()
        return p if p.is_absolute() or base is None else (base / p)
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool,
                "list[str]": list, "list[int]": list}.get(kind)
    if kind == "list[int]" and isinstance(value, list) and not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TargetError(f"{name} must be a list of integers", expected=kind, found=repr(value))
    if expected is not None and (not isinstance(value, expected) or
                                 (kind in ("int", "float") and isinstance(value, bool))):
        raise TargetError(f"{name} has the wrong type", expected=kind, found=repr(value))
    return float(value) if kind == "float" else value
