"""``lab up --fleet N`` / ``lab down`` / ``lab status`` of the fleet lab.

``up``: the lab's dockerd, its network, the host image; the server host (spire-server under
systemd, bound to its lab address); N agent hosts, each with its own swtpm (EK certificate,
DevID), spire-agent attested by a join token read from its 0600 join_token_file, and its
workload (``mtls-app.service``, uid 1001) registered under that agent and VERIFIED; sshd on
every host. Writes ``<root>/fleet/hosts.json`` and ``<root>/fleet/inventory.ini``.
``down``: removes every container and the network (then core.down stops dockerd by pid and
unmounts what it left).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from spire_migration.fileio import write_file
from spire_migration.redact import redact
from spire_migration.retry import poll

from .. import core, docker_engine, swtpm
from ..errors import LabError
from ..layout import Layout
from ..spire_build import SPIRE_VERSION, ensure_spire
from . import hosts, image, inventory, network, provision
from .docker import Docker
from .layout import AGENT_SOCKET, OPT_SPIRE, SERVER, WORKLOAD_UID, FleetLayout, Host

Log = Callable[[str], None]
AGENT_ALIAS = core.AGENT_ALIAS
WORKLOAD_ID = f"spiffe://{provision.TRUST_DOMAIN}/k8s-workload"
TOKEN_TTL_S = 600


def _parallel(fn: Callable, items: list) -> list:
    """``fn`` over ``items`` in threads; the first failure is raised after all have ended."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(items)))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    return [f.result() for f in futures]


def _hosts(lay: FleetLayout, n: int, subnet) -> list[Host]:
    base = subnet.network_address
    return [lay.host(SERVER, str(base + 10))] + [lay.host(f"node-{i}", str(base + 10 + i)) for i in range(1, n + 1)]


def _fresh_root(root: Path) -> None:
    """A root taken down before is provisioned afresh; one that is up (either lab) is refused."""
    core._prepare_root(root)
    if core.load_state(Layout(root)).get("up"):
        raise LabError(f"a single-machine lab is up at {root}", expected="no lab at this root",
                       found="lab.json: up", remedy=f"python -m lab down --root {root}, or another --root")
    if any(root.iterdir()):
        if _running_dockerd(root) or docker_engine.mounts_under(root):
            raise LabError(f"the old lab at {root} still runs", expected="no dockerd, nothing mounted",
                           found=f"dockerd running: {_running_dockerd(root)}; mounts: "
                                 f"{', '.join(docker_engine.mounts_under(root)) or 'none'}",
                           remedy=f"python -m lab down --root {root}")
        shutil.rmtree(root)
        core._prepare_root(root)


def _running_dockerd(root: Path) -> bool:
    from spire_migration.node import process
    return process.find("dockerd", Layout(root).docker_dir / "dockerd.pid") is not None


def up(root: Path, n: int, log: Log = print) -> Path:
    """Provision the fleet (Phase 3 on every agent host); returns the inventory path."""
    if n < 1:
        raise LabError("a fleet needs agent hosts", expected="--fleet N with N >= 1", found=str(n))
    root = Path(root).resolve()
    lay = FleetLayout(root)
    state = inventory.load(lay)
    if state.get("up"):
        lines = status(root)
        if all(" running" in line for line in lines[1:]):
            log(f"fleet lab at {root} is already up")
            return lay.inventory
        raise LabError(f"the fleet lab at {root} is half up", expected="every host running",
                       found="; ".join(lines), remedy=f"python -m lab down --root {root}")
    _fresh_root(root)
    t0 = time.monotonic()
    bin_dir = ensure_spire(log)
    docker = Docker(docker_engine.start(Layout(root).docker_dir))
    python = hosts.venv_python()
    subnet = network.create(docker, lay)
    all_hosts = _hosts(lay, n, subnet)
    server, agents = all_hosts[0], all_hosts[1:]
    state = {"up": True, "spire_version": SPIRE_VERSION, "docker_host": docker.host, "inventory": str(lay.inventory),
             "ssh_key": str(lay.client_key), "known_hosts": str(lay.known_hosts),
             "subnet": str(subnet), "network": lay.network,
             "bridge": lay.bridge, "machine_ip": str(subnet.network_address + network.MACHINE),
             "hosts": [{"name": h.name, "ip": h.ip, "role": h.role} for h in all_hosts]}
    inventory.save(lay, state)
    log(f"dockerd and network {lay.network} ({subnet}, bridge {lay.bridge}) ready ({time.monotonic() - t0:.1f} s)")

    tag = _prepare(lay, docker, python, server, agents)
    log(f"image, swtpm + EK cert + DevID for {len(agents)} agent hosts, ssh keys ready "
        f"({time.monotonic() - t0:.1f} s)")
    ids = {server.name: hosts.start(docker, lay, server, tag, bin_dir)}
    srv = _server_ready(docker, lay, server)
    log(f"server host up, spire-server healthy on {server.ip}:{provision.SERVER_PORT} "
        f"({time.monotonic() - t0:.1f} s)")
    _join_tokens_and_entries(srv, server, agents)
    ids.update(zip((h.name for h in agents), _parallel(lambda h: hosts.start(docker, lay, h, tag, bin_dir), agents)))
    _parallel(lambda h: _wait_agent_host(docker, lay, h), agents)
    log(f"{len(agents)} agent hosts attested by join_token, workloads VERIFIED ({time.monotonic() - t0:.1f} s)")

    _parallel(lambda h: _wait_ssh(lay, h), all_hosts)
    for entry in state["hosts"]:
        entry["container"] = ids[entry["name"]]
        entry["container_name"] = lay.container(entry["name"])
        entry["memory_bytes"] = hosts.memory_bytes(ids[entry["name"]])
    state["up_seconds"] = round(time.monotonic() - t0, 1)
    path = inventory.write(lay, state, python)
    log(f"fleet lab up in {state['up_seconds']} s; memory per host: "
        + ", ".join(f"{h['name']} {(h['memory_bytes'] or 0) / 2**20:.0f} MiB" for h in state["hosts"]))
    return path


def _prepare(lay: FleetLayout, docker: Docker, python: str, server: Host, agents: list[Host]) -> str:
    """Everything written before a host starts: folders, targets, TPMs, ssh keys, the image (its tag)."""
    provision.client_key(lay)
    provision.cas(lay.root)
    for h in (server, *agents):
        provision.folders(h)
        provision.write_target(h)
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = pool.submit(image.ensure, docker, python, str(hosts.PROJECT / "workload" / "mtls_app.py"))
        tpms = [pool.submit(provision.tpm, h) for h in agents]
        known = [provision.sshd(lay, h) for h in (server, *agents)]
        tag = built.result()
        for f in tpms:
            f.result()
    write_file(lay.known_hosts, "".join(known), mode=0o644)
    provision.server_files(server)
    return tag


def _server_ready(docker: Docker, lay: FleetLayout, server: Host) -> hosts.HostServer:
    hosts.wait_booted(docker, lay.container(SERVER))
    srv = hosts.HostServer(docker, lay.container(SERVER), server)
    srv.wait_healthy(60.0)
    return srv


def _join_tokens_and_entries(srv: hosts.HostServer, server: Host, agents: list[Host]) -> None:
    """Phase 3 as the guide has it, per agent host: a join token (into its 0600 join_token_file),
    the bootstrap bundle, agent.conf, and the workload's entry under that agent."""
    bundle = srv.bundle_pem()
    entries = []
    for h in agents:
        token = srv.token_generate(spiffe_id=AGENT_ALIAS, ttl=TOKEN_TTL_S)
        provision.agent_files(h, server.ip, bundle, token.reveal())
        entries.append({"spiffe_id": WORKLOAD_ID, "selectors": [{"type": "unix", "value": f"uid:{WORKLOAD_UID}"}],
                        "parent_id": f"spiffe://{provision.TRUST_DOMAIN}/spire/agent/join_token/{token.reveal()}"})
    result = srv.create_entries(entries)
    if result.failed:
        raise LabError("could not register the workloads", expected="entries created",
                       found=f"{len(result.failed)} failed: {result.failed[0][1]}")


def _wait_agent_host(docker: Docker, lay: FleetLayout, h: Host, timeout: float = 90.0) -> None:
    """The agent host booted, its agent attested (healthy), its workload VERIFIED; else the logs say why."""
    c = lay.container(h.name)
    try:
        hosts.wait_booted(docker, c)
        poll(lambda: docker.exec(c, "/opt/spire/bin/spire-agent", "healthcheck", "-socketPath",
                                 str(AGENT_SOCKET), check=False).returncode == 0,
             timeout=timeout, what=f"spire-agent healthy on {h.name}", error=LabError)
        hosts.wait_log(docker, c, "mtls-app.service", "VERIFIED", timeout=timeout)
    except LabError as exc:
        tail = "\n".join(hosts.journal(docker, c, "spire-agent.service").splitlines()[-8:])
        app = "\n".join(hosts.journal(docker, c, "mtls-app.service").splitlines()[-4:])
        raise LabError(exc.message, expected=exc.expected, found=redact(f"{exc.found}\nspire-agent:\n{tail}\n"
                                                                        f"mtls-app:\n{app}"),
                       remedy=f"docker -H {docker.host} exec {c} journalctl -b") from exc


def ssh_argv(lay: FleetLayout, h: Host | dict, *command: str) -> list[str]:
    """``ssh`` to a host as root with the lab's key and known_hosts (no other config read)."""
    ip = h.ip if isinstance(h, Host) else h["ip"]
    return ["ssh", "-F", "none", "-i", str(lay.client_key), "-o", f"UserKnownHostsFile={lay.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", f"root@{ip}", *command]


def _wait_ssh(lay: FleetLayout, h: Host, timeout: float = 30.0) -> None:
    poll(lambda: subprocess.run(ssh_argv(lay, h, "true"), capture_output=True, timeout=15).returncode == 0,
         timeout=timeout, what=f"ssh root@{h.ip} ({h.name})", error=LabError)


def down(root: Path, log: Log = print) -> None:
    """Remove the fleet's containers and network (dockerd itself: core.down). Idempotent."""
    root = Path(root).resolve()
    lay = FleetLayout(root)
    state = inventory.load(lay)
    if _running_dockerd(root):
        docker = Docker(Layout(root).docker_host)
        for cid in hosts.container_ids(docker, lay):
            docker.run("rm", "-f", "-v", cid)
            log(f"removed container {cid[:12]}")
        if network.remove(docker, lay):
            log(f"removed network {lay.network}")
    if network.bridge_exists(lay):   # a dockerd that died without removing it
        subprocess.run(["ip", "link", "del", lay.bridge], check=True, capture_output=True)
    for h in state.get("hosts", []):
        if h["role"] == "agent" and lay.host(h["name"], h["ip"]).tpm_dir.exists():
            swtpm.stop(lay.host(h["name"], h["ip"]).tpm_dir)   # a provisioning swtpm left running
    if state:
        state["up"] = False
        inventory.save(lay, state)


def status(root: Path) -> list[str]:
    """One line per host: container, systemd, units, memory."""
    root = Path(root).resolve()
    lay = FleetLayout(root)
    state = inventory.load(lay)
    if not state:
        return [f"fleet lab {root}: not provisioned"]
    lines = [f"fleet lab {root}: {'up' if state.get('up') else 'down'}, {len(state['hosts'])} hosts on "
             f"{state.get('subnet')} (bridge {state.get('bridge')})"]
    docker = Docker(Layout(root).docker_host) if _running_dockerd(root) else None
    for h in state["hosts"]:
        c = lay.container(h["name"])
        running = docker is not None and docker.run("inspect", "-f", "{{.State.Running}}", c,
                                                      check=False).stdout.strip() == "true"
        if not running:
            lines.append(f"host {h['name']} {h['ip']}: stopped")
            continue
        units = ["spire-server.service"] if h["role"] == "server" else \
            ["swtpm.service", "spire-agent.service", "mtls-app.service"]
        units.append("ssh.service")
        active = " ".join(f"{u.removesuffix('.service')}={'active' if hosts.unit_active(docker, c, u) else 'inactive'}"
                          for u in units)
        mem = hosts.memory_bytes(h.get("container", "")) or 0
        lines.append(f"host {h['name']} {h['ip']}: running, systemd {hosts.system_state(docker, c)}, {active}, "
                     f"memory {mem / 2**20:.0f} MiB")
    return lines
