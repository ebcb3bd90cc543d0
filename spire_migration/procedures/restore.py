"""Put Phase 3 back by itself when guide step 6 or 7 fails: the node is never left
without SPIRE.

The Phase 4 processes are stopped (by pid), both configs come back byte for
byte from the journal's backups, the agent's cached join_token SVID comes back
from ``agent-data.json``'s backup and its private key from where step 6 set
it aside (``keys.json.phase3`` in the agent's own key folder: the key is never
copied, and never enters the journal), so the old agent resumes without a new
token; the server then the agent start, and the old agent is proven back and
serving. The journal keeps its backups and the old agent ID; the steps from 4
on are marked undone, so a later run resumes from there.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from spire_migration.config import attestor
from spire_migration.node import services
from spire_migration.errors import MigrationError
from spire_migration.config.hclconfig import load_config
from spire_migration.fileio import refuse_link, write_file
from spire_migration.records.journal import Journal, sha256_file
from spire_migration.redact import redact
from spire_migration.procedures.reregister import apply_break, reparent_plan
from spire_migration.config.target import Target

AGENT_DATA = "agent-data.json"   # journal backup of the agent's cached join_token SVID (step 6)
ASIDE = ".phase3"                # the old agent's keys.json, set aside in its own folder until step 7 passes
UNDONE = ("guide_step_4", "guide_step_5", "guide_step_6", "guide_step_7")


T = TypeVar("T")


def or_phase3_back(step: str, perform: Callable[[], T], t: Target, journal: Journal,
                   old_agent_id: Callable[[], str | None], log: Callable[[str], None],
                   sides: tuple[str, ...] = ("server", "agent")) -> T:
    """Run ``perform`` (guide step 6 or 7); if it fails, put Phase 3 back and raise the
    failure with its cause and what was restored."""
    try:
        return perform()
    except Exception as exc:
        old = old_agent_id()
        if not old:
            raise
        cause = redact(str(exc))
        try:
            done = put_phase3_back(t, journal, old, log=log, sides=sides)
        except Exception as again:
            raise MigrationError(f"{step} failed, and Phase 3 could not be put back",
                                 expected="a running SPIRE node", found=f"cause: {cause}\nrestore: "
                                 f"{redact(str(again))}", remedy="run `pytest -m rollback` now") from exc
        raise MigrationError(f"{step} failed: Phase 3 was put back (the old agent serves again)",
                             expected=f"{step} to pass", found=f"cause: {cause}\nput back: " + "; ".join(done),
                             remedy="fix the cause, then run `pytest -m migrate` again: the journal "
                                    "resumes from step 4") from exc


def put_phase3_back(t: Target, journal: Journal, old_agent_id: str,
                    log: Callable[[str], None] = lambda s: None,
                    sides: tuple[str, ...] = ("server", "agent")) -> list[str]:
    """Restore Phase 3 and prove the old agent serves; returns what was done.

    ``sides``: both on one host; ``("agent",)`` on a fleet's agent node (the server, on its
    own host, keeps running in dual mode: the old agent's entries are still there until
    the break part).
    """
    done: list[str] = []
    agent_side, server_side = "agent" in sides, "server" in sides
    stops = [("spire-agent", services.stop_agent)] * agent_side + [("spire-server", services.stop_server)] * server_side
    for what, stop in stops:
        info = stop(t)
        if info is not None:
            done.append(f"stopped {what} pid {info.pid}")
    files = [("server.conf", t.server.config)] * server_side + [("agent.conf", t.agent.config)] * agent_side
    if agent_side and journal.has_backup(AGENT_DATA):
        files.append((AGENT_DATA, services.agent_data_file(t)))
    keys = agent_key_file(t) if agent_side else None   # read from the Phase 4 agent.conf, before it is restored
    if keys is not None and _aside(keys).is_file() and not _aside(keys).is_symlink():
        os.replace(_aside(keys), keys)
        done.append(f"put the old agent's key back in {keys}")
    for name, dest in files:
        backup = journal.verify_backup(name)
        if dest.exists() and sha256_file(dest) == sha256_file(backup):
            continue
        refuse_link(dest)
        write_file(dest, backup.read_bytes())
        done.append(f"restored {dest} from the journal ({name})")
    new_id = attestor.expected_agent_id(t)
    server = services.server_cli(t)
    if server_side:
        services.start_server(t)
        done.append("started spire-server with the Phase 3 config; it is healthy")
        if new_id and new_id != old_agent_id and server.agent(new_id) is not None:
            server.evict(new_id)   # the TPM agent of the failed attempt serves nothing yet
            done.append(f"evicted the TPM agent of the failed attempt {new_id}")
        if new_id and new_id != old_agent_id:   # what step 6 made for the new agent goes (the old one keeps its own)
            done += unmake(server, new_id, old_agent_id, t.server_id)
    if agent_side:
        info = services.start_agent(t, join_token=None)
        identify = services.agent_identity if server_side else services.node_agent_identity
        ident = services.wait_agent_ready(t, info, identify)
        if ident != old_agent_id or (server_side and server.agent(old_agent_id) is None):
            raise MigrationError("Phase 3 could not be put back", expected=f"the old agent {redact(old_agent_id)} "
                                 "attested and known to the server", found=f"agent {redact(str(ident))}",
                                 remedy="run `pytest -m rollback` (it attests with a new join token)")
        done.append(f"started spire-agent pid {info.pid} with its cached join_token SVID: "
                    f"it serves again as {redact(ident)}")
    journal.reset(*UNDONE)
    journal.set_fact("phase3_restored_at", datetime.now(timezone.utc).isoformat())
    for line in done:
        log(f"restore: {line}")
    return done


def unmake(server, new_id: str, old_id: str, server_id: str) -> list[str]:
    """Delete the copies made for ``new_id`` before a switch that did not happen (the old
    agent's own entries and aliases stay)."""
    plan = reparent_plan(server, new_id, old_id, server_id)
    if plan.create:   # not a copy of an old entry: not ours to delete
        plan = replace(plan, create=[], delete=[])
    return [c.replace("deleted", "deleted the copies made before the switch:", 1) for c in apply_break(server, plan)]


def agent_key_file(t: Target) -> Path | None:
    """Where the agent keeps its SVID's private key: KeyManager "disk"'s keys.json."""
    disk = load_config(t.agent.config).plugins("KeyManager").get("disk")
    directory = ((disk or {}).get("plugin_data") or {}).get("directory")
    return Path(directory) / "keys.json" if directory else None


def _aside(keys: Path, suffix: str = ASIDE) -> Path:
    return keys.with_name(keys.name + suffix)


def back_up_agent_identity(t: Target, journal: Journal, name: str = AGENT_DATA, suffix: str = ASIDE,
                           which: str = "join_token") -> list[str]:
    """Keep the running identity's cached SVID (journal backup ``name``) and set its key aside
    (renamed in its own folder, ``keys.json<suffix>``) so that agent can resume without
    attesting again; without a disk KeyManager it cannot (the key is in memory)."""
    journal.backup_file(name, services.agent_data_file(t))
    keys = agent_key_file(t)
    if keys is None or not keys.is_file() or keys.is_symlink():
        return ["the agent keeps no key file: a failed start is put back by `pytest -m rollback`"]
    if not _aside(keys, suffix).exists():
        os.rename(keys, _aside(keys, suffix))
    return [f"set the {which} agent's key aside ({_aside(keys, suffix).name}) until the new attestation is proven"]


def put_agent_identity_back(t: Target, journal: Journal, name: str, suffix: str) -> list[str]:
    """The cached SVID from the journal's backup ``name`` and the key set aside with ``suffix``,
    back where the agent reads them (what :func:`back_up_agent_identity` kept)."""
    done = []
    keys = agent_key_file(t)
    if keys is not None and _aside(keys, suffix).is_file() and not _aside(keys, suffix).is_symlink():
        os.replace(_aside(keys, suffix), keys)
        done.append(f"put the agent's key back in {keys}")
    if journal.has_backup(name):
        dest = services.agent_data_file(t)
        refuse_link(dest)
        write_file(dest, journal.verify_backup(name).read_bytes())
        done.append(f"restored {dest} from the journal ({name})")
    return done


def drop_old_agent_key(t: Target, suffix: str = ASIDE) -> None:
    """Once the new attestation is proven, the old agent's key is not kept."""
    keys = agent_key_file(t)
    if keys is not None:
        _aside(keys, suffix).unlink(missing_ok=True)
