"""Bring the swtpm lab up and down: a real Phase 3 node on one machine.

``up`` provisions, under one root: swtpm with an EK certificate from a CA
private to the lab, a DevID key and certificate in that TPM (what a hardware
installer would have provisioned for Phase 4), a Docker engine on its own
socket, the workload image, and the Phase 3 state exactly as the guide has it
(join_token attestor, the agent started with a join token, the workload entry
under that agent, the workload running and logging VERIFIED). It writes the
target description the suite takes with ``--target``.

``down`` stops every process the lab started, by pid, and leaves nothing
mounted. The files stay for inspection (``--purge`` removes them).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Callable

from spire_migration.node import process
from spire_migration.node import services
from .errors import LabError
from spire_migration.fileio import write_file
from spire_migration.errors import TargetError
from spire_migration.fsperm import check_trusted_path
from spire_migration.node.runtimes import get_runtime
from spire_migration.config.target import Target

from . import configs, docker_engine, postgres, swtpm
from .devid import provision_devid
from .fleet.layout import FleetLayout
from .layout import DEFAULT_ROOT, PRIVATE_BASE, Layout, Node, private_base
from .ports import free_port
from .spire_build import SPIRE_VERSION, ensure_spire

TRUST_DOMAIN = "example.org"
#: The node alias the guide's `token generate -spiffeID` creates.
AGENT_ALIAS = f"spiffe://{TRUST_DOMAIN}/agent"

Log = Callable[[str], None]


def _user() -> str:
    """The OS user the lab's server runs as (its PostgreSQL role: peer authentication)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def load_state(lay: Layout) -> dict:
    try:
        return json.loads(lay.state.read_text())
    except FileNotFoundError:
        return {}


def save_state(lay: Layout, state: dict) -> None:
    write_file(lay.state, json.dumps(state, indent=2) + "\n", mode=0o644)


def target_for(lay: Layout, node: str | None = None) -> Target:
    """The target description of one lab node (the first by default)."""
    state = load_state(lay)
    if not state:
        raise LabError(f"no lab at {lay.root}", expected=f"{lay.state}",
                       found="no such file", remedy="python -m lab up")
    name = node or state["nodes"][0]
    path = lay.root / Target.file_name(name)
    return Target.load(path if path.exists() else lay.target)


def _target_toml(lay: Layout, node: Node, state: dict) -> str:
    td = state["trust_domain"]
    return f'''# Target description of the swtpm lab node {node.name} (written by `python -m lab up`).
trust_domain = "{td}"
node = "{node.name}"
bin_dir = "{state['bin_dir']}"

[server]
config = "{lay.server_conf}"
socket = "{lay.server_socket}"
data_dir = "{lay.server_data}"
log = "{lay.server_log}"
pid_file = "{lay.server_pid}"
bind_port = {state['server_port']}

[agent]
config = "{node.agent_conf}"
socket = "{node.agent_socket}"
data_dir = "{node.agent_data}"
log = "{node.agent_log}"
pid_file = "{node.agent_pid}"
user = "root"

[tpm]
device = "{node.swtpm_sock}"

[attestor]
profile = "tpm_devid"
devid_cert = "{node.devid_dir / 'devid.crt.pem'}"
devid_priv = "{node.devid_dir / 'devid.priv'}"
devid_pub = "{node.devid_dir / 'devid.pub'}"
devid_ca = "{lay.devid_ca_bundle}"
endorsement_ca = "{lay.endorsement_ca_bundle}"

[workload]
runtime = "docker"
docker_host = "{lay.docker_host}"
deployment = "mtls-app-{node.name}"
server_container = "{node.name}-mtls-server"
client_container = "{node.name}-mtls-client"
app_port = {state['app_ports'][node.name]}
ro_mounts = {json.dumps(docker_engine.python_mounts())}

[journal]
dir = "{lay.journal_dir}"

[thresholds]
svid_fetch_ms = 1000.0
start_timeout_s = 60.0
'''


def _prepare_root(root: Path) -> None:
    """Create the lab root where its target files will pass the suite's ownership check."""
    if root.is_relative_to(PRIVATE_BASE):
        private_base()
    try:
        check_trusted_path(next(p for p in (root, *root.parents) if p.exists()))
    except TargetError as exc:
        raise LabError(f"lab root {root} is not a place for a target description", expected=exc.expected,
                       found=exc.found, remedy=f"use a root under {PRIVATE_BASE} (the default: "
                                               f"{DEFAULT_ROOT}), e.g. --root {PRIVATE_BASE / root.name}") from None
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)


def up(root: Path, agents: int = 1, log: Log = print, datastore: str = "sqlite3") -> Path:
    """Provision the lab and the Phase 3 state; returns the target file path.

    ``datastore``: the server's DataStore "sql" database type, sqlite3 (the guide's) or
    postgres (a private cluster under the lab root, see :mod:`lab.postgres`)."""
    if datastore not in configs.DATASTORES:
        raise LabError("unknown datastore", expected=" or ".join(configs.DATASTORES), found=datastore)
    lay = Layout(Path(root).resolve())
    _prepare_root(lay.root)
    if json.loads(_read(FleetLayout(lay.root).hosts_json) or "{}").get("up"):
        raise LabError(f"a fleet lab is up at {lay.root}", expected="no lab at this root", found="fleet: up",
                       remedy=f"python -m lab down --root {lay.root}, or another --root")
    if load_state(lay).get("up"):
        status_lines = status(lay.root)
        if all("running" in line for line in status_lines if not line.startswith("lab")):
            log(f"lab at {lay.root} is already up")
            return lay.target
        raise LabError(f"a lab at {lay.root} is half up", expected="all parts running or none",
                       found="; ".join(status_lines), remedy=f"python -m lab down --root {lay.root}")
    t0 = time.monotonic()
    if lay.state.exists():  # a lab that was taken down: provision afresh
        if _lab_pids(lay):
            raise LabError(f"processes of an old lab at {lay.root} still run", expected="none",
                           found=", ".join(f"{i.pid} {i.command}" for i in _lab_pids(lay)),
                           remedy=f"python -m lab down --root {lay.root}")
        shutil.rmtree(lay.root)
        _prepare_root(lay.root)
    bin_dir = ensure_spire(log)
    names = [f"node-{i}" for i in range(1, agents + 1)]
    state = {"up": True, "trust_domain": TRUST_DOMAIN, "bin_dir": str(bin_dir),
             "spire_version": SPIRE_VERSION, "server_port": free_port(), "nodes": names,
             "app_ports": {n: free_port() for n in names}, "datastore": datastore}
    save_state(lay, state)

    # TPMs and DevIDs: what the hardware installer would have provisioned.
    for name in names:
        node = lay.node(name)
        swtpm.provision(node.tpm_dir, lay.ek_ca_dir)
        swtpm.start(node.tpm_dir)
        files = provision_devid(node.swtpm_sock, node.devid_dir, lay.devid_ca_dir, f"{name}.{TRUST_DOMAIN}")
        lay.devid_ca_bundle.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files.ca_cert, lay.devid_ca_bundle)
        shutil.copyfile(swtpm.endorsement_ca_path(lay.ek_ca_dir), lay.endorsement_ca_bundle)
    log(f"swtpm + EK cert + DevID ready for {', '.join(names)} ({time.monotonic() - t0:.1f} s)")

    docker_host = docker_engine.start(lay.docker_dir)
    docker_engine.build_workload_image(docker_host)
    log(f"dockerd and workload image ready ({time.monotonic() - t0:.1f} s)")

    # Phase 3, as the guide has it.
    lay.server_conf.parent.mkdir(parents=True, exist_ok=True)
    lay.server_data.mkdir(parents=True, exist_ok=True)
    connection = None
    if datastore == "postgres":
        connection = postgres.start(lay.postgres_dir).connection_string(_user())
        log(f"PostgreSQL ready on {lay.postgres_dir / 'socket'} ({time.monotonic() - t0:.1f} s)")
    write_file(lay.server_conf, configs.server_conf(lay, TRUST_DOMAIN, state["server_port"], datastore,
                                                    connection), mode=0o644)
    for name in names:
        node = lay.node(name)
        node.agent_data.mkdir(parents=True, exist_ok=True)
        write_file(node.agent_conf, configs.agent_conf(lay, node, TRUST_DOMAIN, state["server_port"],
                                                       docker_host), mode=0o644)
        write_file(lay.root / Target.file_name(name), _target_toml(lay, node, state), mode=0o644)
    shutil.copyfile(lay.root / Target.file_name(names[0]), lay.target)

    first = Target.load(lay.target)
    services.start_server(first)
    write_file(lay.bootstrap_bundle, services.server_cli(first).bundle_pem(), mode=0o644)
    log(f"spire-server healthy ({time.monotonic() - t0:.1f} s)")
    for name in names:
        start_phase3_agent(target_for(lay, name), log)
    log(f"lab up in {time.monotonic() - t0:.1f} s")
    return lay.target


def start_phase3_agent(t: Target, log: Log = print) -> str:
    """Generate a join token, start the agent with it, register the workload, deploy it."""
    server = services.server_cli(t)
    token = server.token_generate(spiffe_id=AGENT_ALIAS, ttl=services.token_ttl(t))
    info = services.start_agent(t, join_token=token)   # by file, never on the command line
    agent_id = services.wait_agent_ready(t, info)
    entry = {"spiffe_id": t.workload.spiffe_id, "parent_id": agent_id,
             "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in t.workload.selectors]}
    result = server.create_entries([entry])
    if result.failed:
        raise LabError("could not register the workload", expected="entry created",
                       found=str(result.failed))
    runtime = get_runtime(t)
    runtime.deploy(3, None, timeout=t.thresholds.start_timeout_s)
    for inst in runtime.instances():
        if "client" in inst.name:
            runtime.wait_for_log(inst, "VERIFIED", timeout=t.thresholds.start_timeout_s)
    log(f"{t.node}: agent attested by join_token, workload VERIFIED")
    return agent_id


def down(root: Path, purge: bool = False, log: Log = print) -> None:
    """Stop everything the lab started, by pid; unmount what dockerd left."""
    lay = Layout(Path(root).resolve())
    state = load_state(lay)
    for name in state.get("nodes", []):
        try:
            t = target_for(lay, name)
        except Exception:  # noqa: BLE001 - a half-written lab still gets torn down
            continue
        if (info := services.stop_agent(t)):
            log(f"stopped spire-agent {name} (pid {info.pid})")
    if state.get("nodes"):
        try:
            if (info := services.stop_server(target_for(lay))):
                log(f"stopped spire-server (pid {info.pid})")
        except Exception as exc:  # noqa: BLE001
            log(f"server: {exc}")
    if lay.postgres_dir.exists() and (info := postgres.stop(lay.postgres_dir)):
        log(f"stopped PostgreSQL (pid {info.pid})")
    if lay.docker_dir.exists():
        docker_engine.stop(lay.docker_dir)
        log("stopped dockerd")
    for name in state.get("nodes", []):
        node = lay.node(name)
        if node.tpm_dir.exists():
            swtpm.stop(node.tpm_dir)
    log("stopped swtpm")
    if state:
        state["up"] = False
        save_state(lay, state)
    leftovers = [p for p in _lab_pids(lay)]
    if leftovers:
        raise LabError("lab processes still running after down", expected="none",
                       found=", ".join(f"{i.pid} {i.command}" for i in leftovers))
    if purge and lay.root.exists():
        shutil.rmtree(lay.root)
        log(f"removed {lay.root}")


def _lab_pids(lay: Layout) -> list[process.ProcInfo]:
    """Every live process whose command line mentions the lab root."""
    found = []
    needle = str(lay.root)
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and int(pid_dir.name) != os.getpid():
            info = process.proc_info(int(pid_dir.name))
            if info and any(needle in a for a in info.argv) and "lab" not in info.argv[1:3]:
                found.append(info)
    return found


def status(root: Path) -> list[str]:
    """One line per component: running (pid) or stopped."""
    lay = Layout(Path(root).resolve())
    state = load_state(lay)
    if not state:
        return [f"lab {lay.root}: not provisioned"]
    lines = [f"lab {lay.root}: {'up' if state.get('up') else 'down'}, SPIRE {state.get('spire_version')}"]
    t = target_for(lay)
    srv = services.server_proc(t)
    lines.append(f"spire-server: {'running (pid %d)' % srv.pid if srv else 'stopped'}")
    if state.get("datastore") == "postgres":
        pg = postgres.Cluster(lay.postgres_dir).running()
        lines.append(f"postgres: {'running (pid %d)' % pg.pid if pg else 'stopped'}")
    for name in state["nodes"]:
        tn = target_for(lay, name)
        ag = services.agent_proc(tn)
        ident = services.agent_identity(tn) if ag else None
        from spire_migration.redact import redact
        lines.append(f"spire-agent {name}: {'running (pid %d) as %s' % (ag.pid, redact(ident or '?')) if ag else 'stopped'}")
        lines.append(f"swtpm {name}: {'running' if swtpm.is_running(lay.node(name).tpm_dir) else 'stopped'}")
    dockerd = process.find("dockerd", lay.docker_dir / "dockerd.pid")
    lines.append(f"dockerd: {'running (pid %d)' % dockerd.pid if dockerd else 'stopped'}")
    return lines


def exec_env(root: Path, node: str | None = None) -> dict[str, str]:
    """The environment of `python -m lab exec`: lab binaries first, sockets into the lab."""
    lay = Layout(Path(root).resolve())
    t = target_for(lay, node)
    env = dict(os.environ)
    env["PATH"] = f"{t.bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["SPIRE_SERVER_PRIVATE_SOCKET"] = str(t.server.socket)
    env["SPIRE_AGENT_PUBLIC_SOCKET"] = str(t.agent.socket)
    env["DOCKER_HOST"] = t.workload.docker_host
    name, conf = t.tpm.tcti_config()
    env["TPM2TOOLS_TCTI"] = f"{name}:{conf}"
    env["SPIRE_LAB_TARGET"] = str(t.source)
    return env
