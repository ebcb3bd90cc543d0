"""Prove the lab's DevID against the lab's own SPIRE server, then put Phase 3 back.

A throwaway agent (its own config, data dir and sockets under ``work_dir``)
attests with ``tpm_devid`` through the node's swtpm socket. For that the lab
server gets the ``tpm_devid`` attestor next to ``join_token`` for a moment; the
original server.conf bytes are restored and the server restarted afterwards,
and the throwaway agent is evicted, so the lab is back in its Phase 3 state.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from spire_migration.config import attestor
from spire_migration.node import services
from .errors import LabError
from spire_migration.fileio import write_file
from spire_migration.config.hclconfig import HclConfig
from spire_migration.records.locks import server_lock
from spire_migration.config.target import Target
from spire_migration.node.tpm import devid_agent_id, flush_transients


def _throwaway_agent_conf(t: Target, lab_agent_conf: Path) -> str:
    """The lab agent's config with tpm_devid as its only NodeAttestor and its own paths."""
    cfg = HclConfig.load(lab_agent_conf)
    cfg = cfg.with_plugin("NodeAttestor", "tpm_devid", attestor.agent_body(t), replacing="join_token")
    for key, value in (("data_dir", str(t.agent.data_dir)), ("socket_path", str(t.agent.socket))):
        cfg = cfg.with_setting("agent", key, value)
    return cfg.with_plugin("KeyManager", "disk", f'plugin_data {{\n    directory = "{t.agent.data_dir}"\n}}').text


def prove_devid(lab: Target, work_dir: Path) -> str:
    """Attest a throwaway tpm_devid agent to the lab server; return its agent ID."""
    with server_lock(lab.journal.dir):  # it edits and restarts the lab's server
        return _prove_devid(lab, work_dir)


def _prove_devid(lab: Target, work_dir: Path) -> str:
    work = Path(work_dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    agent = dataclasses.replace(lab.agent, config=work / "agent.conf", data_dir=work / "data",
                                socket=work / "public" / "api.sock", log=work / "agent.log",
                                pid_file=work / "agent.pid")
    probe = dataclasses.replace(lab, agent=agent)
    (work / "data").mkdir(parents=True)
    server_text = lab.server.config.read_text()
    server_cfg = HclConfig.load(lab.server.config)
    try:
        write_file(lab.server.config, server_cfg.with_plugin(
            "NodeAttestor", "tpm_devid", attestor.server_body(lab)).text)
        services.stop_server(lab)
        services.start_server(lab)
        write_file(agent.config, _throwaway_agent_conf(probe, lab.agent.config))
        flush_transients(lab.tpm)
        info = services.start_agent(probe)
        agent_id = services.wait_agent_ready(probe, info)
        want = devid_agent_id(lab.attestor.devid_cert, lab.trust_domain)
        if agent_id != want:
            raise LabError("the throwaway agent got an unexpected ID", expected=want, found=agent_id)
        record = services.server_cli(lab).agent(agent_id)
        if not record or record.get("attestation_type") != "tpm_devid":
            raise LabError("the server does not list the throwaway agent as tpm_devid",
                           expected="attestation_type tpm_devid", found=str(record))
        return agent_id
    finally:
        services.stop_agent(probe)
        server = services.server_cli(lab)
        for a in server.agents() if server.healthy() else []:
            if a.get("attestation_type") == "tpm_devid":
                server.evict(f"spiffe://{a['id']['trust_domain']}{a['id']['path']}")
        write_file(lab.server.config, server_text)
        services.stop_server(lab)
        services.start_server(lab)
