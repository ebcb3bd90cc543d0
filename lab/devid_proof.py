"""Prove a lab DevID against real SPIRE: a throwaway server + agent attest with tpm_devid.

All state (configs, data dirs, sockets, logs) stays under ``work_dir``; both
processes are stopped by pid before returning. The server binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from spire_migration.errors import LabError, SpireError
from spire_migration.target import TPMSpec
from spire_migration.tpm import flush_transients

from .devid import DevIDFiles


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _q(value: object) -> str:
    """An HCL string literal."""
    return json.dumps(str(value))


def server_hcl(work: Path, port: int, trust_domain: str, devid_ca: Path,
               endorsement_ca: Path) -> str:
    """server.conf: sqlite, memory keys, join_token and tpm_devid side by side."""
    return f"""server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = {_q(work / "server" / "api.sock")}
  trust_domain = {_q(trust_domain)}
  data_dir = {_q(work / "server" / "data")}
  log_level = "DEBUG"
}}

plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = {_q(work / "server" / "data" / "datastore.sqlite3")}
    }}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  NodeAttestor "tpm_devid" {{
    plugin_data {{
      devid_ca_path = {_q(devid_ca)}
      endorsement_ca_path = {_q(endorsement_ca)}
    }}
  }}
}}
"""


def agent_hcl(work: Path, port: int, trust_domain: str, devid: DevIDFiles,
              swtpm_sock: Path, bundle: Path) -> str:
    """agent.conf: one NodeAttestor (tpm_devid on the swtpm socket), disk keys, no join token."""
    return f"""agent {{
  data_dir = {_q(work / "agent" / "data")}
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = {_q(work / "agent" / "public" / "api.sock")}
  trust_bundle_path = {_q(bundle)}
  trust_domain = {_q(trust_domain)}
}}

plugins {{
  NodeAttestor "tpm_devid" {{
    plugin_data {{
      devid_cert_path = {_q(devid.cert)}
      devid_priv_path = {_q(devid.priv)}
      devid_pub_path = {_q(devid.pub)}
      tpm_device_path = {_q(swtpm_sock)}
    }}
  }}
  KeyManager "disk" {{
    plugin_data {{
      directory = {_q(work / "agent" / "data")}
    }}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _run(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def attest_throwaway_agent(server_bin: Path, agent_bin: Path, work_dir: Path, swtpm_sock: Path,
                           devid: DevIDFiles, endorsement_ca: Path,
                           trust_domain: str = "example.org", timeout: float = 60,
                           flush_leftovers: bool = True) -> str:
    """Start a throwaway server + tpm_devid agent, return the agent's SPIFFE ID once listed.

    swtpm has 3 transient object slots and SPIRE's agent needs all of them (DevID, AK,
    EK): one object left loaded by another client makes attestation fail with "out of
    memory for object contexts". With ``flush_leftovers`` (the lab TPM is ours) they
    are flushed first. Nothing may hold the swtpm socket open meanwhile: swtpm serves
    one connection at a time and the agent would wait.
    """
    work = Path(work_dir).resolve()
    for sub in ("server/data", "agent/data", "agent/public"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    api_sock = work / "server" / "api.sock"
    longest = max(len(str(p).encode()) for p in (api_sock, work / "agent" / "public" / "api.sock"))
    if longest > 100:
        raise LabError("work_dir is too deep for unix sockets", expected="paths under 100 bytes",
                       found=f"{longest} bytes under {work}", remedy="use a shorter work_dir")
    port = _free_port()
    server_conf, agent_conf = work / "server" / "server.conf", work / "agent" / "agent.conf"
    server_log, agent_log = work / "server" / "server.log", work / "agent" / "agent.log"
    server_conf.write_text(server_hcl(work, port, trust_domain, devid.ca_cert, endorsement_ca))
    sock_flag = ["-socketPath", str(api_sock)]
    deadline = time.monotonic() + timeout
    server = agent = None
    try:
        with open(server_log, "wb") as log:
            server = subprocess.Popen([str(server_bin), "run", "-config", str(server_conf)],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        while True:
            if server.poll() is not None:
                raise SpireError("the throwaway SPIRE server exited", expected="a running server",
                                 found=f"exit {server.returncode}: {_tail(server_log)}")
            if _run([str(server_bin), "healthcheck", *sock_flag]).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SpireError("the throwaway SPIRE server is not healthy",
                                 expected=f"healthy within {timeout}s", found=_tail(server_log))
            time.sleep(0.2)
        bundle = _run([str(server_bin), "bundle", "show", "-format", "pem", *sock_flag])
        if bundle.returncode != 0 or "BEGIN CERTIFICATE" not in bundle.stdout:
            raise SpireError("spire-server bundle show failed", expected="a PEM bundle",
                             found=bundle.stderr or bundle.stdout)
        bundle_path = work / "agent" / "bundle.pem"
        bundle_path.write_text(bundle.stdout)
        if flush_leftovers:
            flush_transients(TPMSpec(device=Path(swtpm_sock), tcti=f"swtpm:path={swtpm_sock}"))
        agent_conf.write_text(agent_hcl(work, port, trust_domain, devid, swtpm_sock, bundle_path))
        with open(agent_log, "wb") as log:
            agent = subprocess.Popen([str(agent_bin), "run", "-config", str(agent_conf)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        while True:
            listed = _run([str(server_bin), "agent", "list", "-output", "json", *sock_flag])
            if listed.returncode == 0:
                agents = json.loads(listed.stdout or "{}").get("agents") or []
                for a in agents:
                    if a.get("attestation_type") == "tpm_devid":
                        ident = a["id"]
                        return f"spiffe://{ident['trust_domain']}{ident['path']}"
            failed = [line for line in _tail(agent_log, 20000).splitlines()
                      if "Failed to retrieve attestation result" in line]
            if failed:
                raise SpireError("the throwaway agent's tpm_devid attestation failed",
                                 expected="tpm_devid attestation succeeds",
                                 found=failed[0][-1500:],
                                 remedy=f"read {agent_log} and {server_log}")
            if agent.poll() is not None:
                raise SpireError("the throwaway SPIRE agent exited before attesting",
                                 expected="tpm_devid attestation",
                                 found=f"exit {agent.returncode}: {_tail(agent_log)}")
            if time.monotonic() > deadline:
                raise SpireError("the throwaway agent did not attest",
                                 expected=f"a tpm_devid agent in `agent list` within {timeout}s",
                                 found=f"agent log: {_tail(agent_log)}\nserver log: "
                                       f"{_tail(server_log, 1500)}")
            time.sleep(0.2)
    finally:
        _stop(agent)
        _stop(server)
