"""The lab's own bridge network: one free /24 of 10.231.0.0/16, a bridge named from the lab root.

The engine runs with ``--iptables=false --bridge=none``. Docker 20.10 gives every container a
default route via the network's gateway, and this machine forwards IPv4: so the gateway address
(.1) is put on no interface (``inhibit_ipv4``), a route to it leads nowhere, and the machine
takes .254 on the bridge instead (:data:`MACHINE`) to reach the hosts (ssh, tests). The hosts
reach each other and the machine on that /24 only.
Choosing the /24 and creating the network happen under a lock shared by every lab of the
machine, so two labs never take the same one.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import subprocess
from pathlib import Path

from ..errors import LabError
from ..layout import private_base
from .docker import Docker
from .layout import FleetLayout

POOL = ipaddress.ip_network("10.231.0.0/16")
MACHINE = 254      # the machine's address on the lab network: .254
LOCK = "fleet-network.lock"


_ROUTE_TYPES = {"local", "broadcast", "unicast", "multicast", "anycast", "unreachable", "blackhole",
                "prohibit", "throw", "nat"}


def _taken() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine routes (any table) or has an address in."""
    words: list[str] = []
    routes = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout
    for line in routes.splitlines():
        parts = line.split()
        words.append(parts[1] if parts and parts[0] in _ROUTE_TYPES and len(parts) > 1 else parts[0])
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    words += [line.split()[line.split().index("inet") + 1] for line in addrs.splitlines() if " inet " in line]
    nets = []
    for word in words:
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:   # "default"
            pass
    return nets


def choose_subnet(lay: FleetLayout) -> ipaddress.IPv4Network:
    """The first /24 of the pool, from one derived from the lab root on, nothing on the machine uses."""
    subnets = list(POOL.subnets(new_prefix=24))
    start = int(lay.tag, 16) % len(subnets)
    taken = _taken()
    for i in range(len(subnets)):
        net = subnets[(start + i) % len(subnets)]
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise LabError("no free /24 for the fleet network", expected=f"a /24 of {POOL} not routed",
                   found="all routed", remedy="take other labs down")


def create(docker: Docker, lay: FleetLayout) -> ipaddress.IPv4Network:
    """Create the lab network (or find it); return its subnet."""
    existing = inspect(docker, lay)
    if existing:
        return existing
    with open(private_base() / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        net = choose_subnet(lay)
        docker.run("network", "create", "--driver", "bridge", "--internal",
                   "--subnet", str(net), "--gateway", str(net.network_address + 1),
                   "--opt", f"com.docker.network.bridge.name={lay.bridge}",
                   "--opt", "com.docker.network.bridge.inhibit_ipv4=true",
                   "--opt", "com.docker.network.bridge.enable_ip_masquerade=false",
                   "--label", f"io.spire-migration.lab={lay.root}", lay.network)
        subprocess.run(["ip", "addr", "add", f"{net.network_address + MACHINE}/{net.prefixlen}",
                        "dev", lay.bridge], capture_output=True, text=True, check=True)
    return net


def inspect(docker: Docker, lay: FleetLayout) -> ipaddress.IPv4Network | None:
    proc = docker.run("network", "inspect", lay.network, check=False)
    if proc.returncode != 0:
        return None
    config = json.loads(proc.stdout)[0]["IPAM"]["Config"][0]
    return ipaddress.ip_network(config["Subnet"])


def remove(docker: Docker, lay: FleetLayout) -> bool:
    """Remove the lab network; True when there was one."""
    if inspect(docker, lay) is None:
        return False
    docker.run("network", "rm", lay.network)
    return True


def bridge_exists(lay: FleetLayout) -> bool:
    return Path("/sys/class/net", lay.bridge).exists()

