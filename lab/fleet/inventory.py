"""The fleet's Ansible inventory and hosts.json (what tests and playbooks read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spire_migration.fileio import write_file

from .layout import TARGET, FleetLayout


def inventory_ini(lay: FleetLayout, hosts: list[dict[str, Any]], python: str) -> str:
    """Groups spire_servers and spire_agents; every host by SSH as root with the lab's key, every
    variable on the host's own line."""
    common = (f"-o UserKnownHostsFile={lay.known_hosts} -o StrictHostKeyChecking=yes "
              "-o IdentitiesOnly=yes -o BatchMode=yes")
    out = [f"# The fleet lab at {lay.root} (written by `python -m lab up --fleet`).", ""]
    for group, role in (("spire_servers", "server"), ("spire_agents", "agent")):
        out.append(f"[{group}]")
        out += [f"{h['name']} ansible_host={h['ip']} ansible_connection=ssh ansible_user=root "
                f"ansible_ssh_private_key_file={lay.client_key} ansible_ssh_common_args='{common}' "
                f"ansible_python_interpreter={python} spire_target={TARGET} "
                f"spire_migration={Path(python).parent / 'spire-migration'}"
                for h in hosts if h["role"] == role]
        out.append("")
    return "\n".join(out)


def write(lay: FleetLayout, state: dict[str, Any], python: str) -> Path:
    """hosts.json (the fleet's state) and inventory.ini; returns the inventory's path."""
    save(lay, state)
    write_file(lay.inventory, inventory_ini(lay, state["hosts"], python), mode=0o644)
    return lay.inventory


def save(lay: FleetLayout, state: dict[str, Any]) -> None:
    lay.fleet_dir.mkdir(parents=True, exist_ok=True)
    write_file(lay.hosts_json, json.dumps(state, indent=2) + "\n", mode=0o644)


def load(lay: FleetLayout) -> dict[str, Any]:
    try:
        return json.loads(lay.hosts_json.read_text())
    except FileNotFoundError:
        return {}
