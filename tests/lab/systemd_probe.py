"""Run INSIDE the systemd container of test_systemd_mode.py: one action of the library, one JSON line out.

``python systemd_probe.py ACTION TARGET.toml`` prints ``{"ok": true, ...}`` (or ``{"ok": false,
"error": ...}``, exit 1) so the test, outside, asserts on what the library did under systemd.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from spire_migration.config.target import Target
from spire_migration.errors import MigrationError
from spire_migration.fileio import write_file
from spire_migration.node import services, systemd
from spire_migration.node.facade import Node
from spire_migration.node.runtimes import get_runtime


def _units(t: Target) -> dict:
    return {u: {"active": systemd.is_active(u), "main_pid": systemd.main_pid(u)}
            for u in (t.server.unit, t.agent.unit) if u}


def up(t: Target) -> dict:
    t0 = time.monotonic()
    server = services.start_server(t)
    server_s = time.monotonic() - t0
    write_file(Path("/srv/spire/bootstrap.crt"), services.server_cli(t).bundle_pem(), mode=0o644)
    token = services.server_cli(t).token_generate(ttl=services.token_ttl(t))
    t1 = time.monotonic()
    agent = services.start_agent(t, join_token=token)
    agent_s = time.monotonic() - t1
    ident = services.wait_agent_ready(t, agent)
    entry = {"spiffe_id": t.workload.spiffe_id, "parent_id": ident,
             "selectors": [{"type": "unix", "value": "uid:1000"}]}
    failed = services.server_cli(t).create_entries([entry]).failed
    return {"server_pid": server.pid, "agent_pid": agent.pid, "agent_id": ident, "entry_failed": bool(failed),
            "server_start_s": round(server_s, 2), "agent_start_s": round(agent_s, 2),
            "server_argv": list(server.argv), "agent_argv": list(agent.argv), "units": _units(t),
            "token_file_mode": oct(Path("/srv/spire/agent/join_token").stat().st_mode & 0o777),
            "token_on_a_command_line": token.reveal() in " ".join(agent.argv) + systemd.show(
                t.agent.unit, "ExecStart")["ExecStart"]}


def restart(t: Target) -> dict:
    before = services.agent_proc(t)
    stopped = services.stop_agent(t)
    after_stop = {"active": systemd.is_active(t.agent.unit), "proc": services.agent_proc(t) is not None}
    t0 = time.monotonic()
    again = services.start_agent(t)
    return {"before": before.pid, "stopped": stopped.pid if stopped else None, "after_stop": after_stop,
            "again": again.pid, "main_pid": systemd.main_pid(t.agent.unit), "start_s": round(time.monotonic() - t0, 2),
            "identity": services.agent_identity(t), "node_agent_proc": Node(t).agent_proc().pid}


def reattest(t: Target) -> dict:
    """Rollback step 3's way under systemd: forget the cached SVID, a new token, start_agent(token)."""
    old = services.agent_identity(t)
    services.stop_agent(t)
    services.forget_agent_svid(t)
    token = services.server_cli(t).token_generate(ttl=services.token_ttl(t))
    info = services.start_agent(t, join_token=token)
    new = services.wait_agent_ready(t, info)
    services.server_cli(t).create_entries([{"spiffe_id": t.workload.spiffe_id, "parent_id": new,
                                            "selectors": [{"type": "unix", "value": "uid:1000"}]}])
    return {"old": old, "new": new, "main_pid": systemd.main_pid(t.agent.unit), "pid": info.pid,
            "token_file_holds_new": Path("/srv/spire/agent/join_token").read_text().strip() == token.reveal()}


def logs(t: Target) -> dict:
    node = Node(t)
    agent, server = node.log_lines("agent"), node.log_lines("server")
    return {"agent_lines": len(agent), "server_lines": len(server),
            "agent_attested": any("Node attestation was successful" in ln for ln in agent),
            "server_attested": any("Agent attestation request completed" in ln for ln in server),
            "source": services.log_source(t, "agent"), "agent_log_file_exists": t.agent.log.exists()}


def _refusals(calls: dict) -> dict:
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = None
        except MigrationError as exc:
            out[name] = str(exc)
    return out


def refuse_pid_mode(t: Target) -> dict:
    """``t`` names no unit, but systemd runs both: every action refuses, nothing is stopped or started."""
    agent_before = systemd.main_pid("spire-agent.service")
    out = _refusals({"check": lambda: services.check_service_mode(t), "stop_agent": lambda: services.stop_agent(t),
                     "start_agent": lambda: services.start_agent(t), "stop_server": lambda: services.stop_server(t),
                     "start_server": lambda: services.start_server(t)})
    out["agent_main_pid_before"] = agent_before
    out["agent_main_pid_after"] = systemd.main_pid("spire-agent.service")
    out["agents_running"] = len([p for p in Path("/proc").glob("[0-9]*") if _exe(p).endswith("/spire-agent")])
    return out


def _exe(p: Path) -> str:
    try:
        return str((p / "exe").readlink())
    except OSError:
        return ""


def refuse_exec_start(t: Target) -> dict:
    import tempfile

    from spire_migration.procedures.migration import Migration
    from spire_migration.records.journal import Journal

    before = Path(t.agent.config).read_bytes(), Path(t.server.config).read_bytes()
    migration = Migration(t, Journal(Path(tempfile.mkdtemp())))
    out = _refusals({"check": lambda: services.check_service_mode(t), "start_agent": lambda: services.start_agent(t),
                     "migration_preflight": migration.preflight})
    out["configs_unchanged"] = before == (Path(t.agent.config).read_bytes(), Path(t.server.config).read_bytes())
    return out


def stray(t: Target) -> dict:
    """A server the suite started by pid (``target-pid.toml``) while the unit is stopped: starting the
    unit is refused (it would run a second server); once that one is stopped by pid, the unit starts."""
    pid_mode = Target.load(t.source.parent / "target-pid.toml")
    services.stop_server(t)
    own = services.start_server(pid_mode)
    out = _refusals({"start_unit": lambda: services.start_server(t)})
    out["unit_active_while_stray"] = systemd.is_active(t.server.unit)
    out["stray_pid"], out["stray_unit"] = own.pid, systemd.unit_of_pid(own.pid)
    services.stop_server(pid_mode)
    out["unit_pid"] = services.start_server(t).pid
    out["main_pid"] = systemd.main_pid(t.server.unit)
    return out


def bad_unit(t: Target) -> dict:
    t0 = time.monotonic()
    out = _refusals({"start_server": lambda: services.start_server(t)})
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


def workload(t: Target) -> dict:
    rt = get_runtime(t)
    rt.check_reachable()
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    plan = rt.plan_deploy(3, None)
    t0 = time.monotonic()
    rt.deploy(3, None, timeout=t.thresholds.start_timeout_s)
    deploy_s = time.monotonic() - t0
    inst = [i for i in rt.instances() if i.state == "running"]
    line = rt.wait_for_log(inst[0], "VERIFIED", t.thresholds.start_timeout_s, since)
    result = rt.check(10)
    return {"plan": plan, "plan_after": rt.plan_deploy(3, None), "deploy_s": round(deploy_s, 2),
            "instances": [(i.name, i.id, i.state, i.phase) for i in inst],
            "main_pid": systemd.main_pid(t.workload.unit), "verified_line": line, "check": result,
            "log_lines_since": len(rt.logs(inst[0], since).splitlines()),
            "selectors": sorted(rt.selectors(inst[0]))}


ACTIONS = {f.__name__: f for f in (up, restart, reattest, logs, refuse_pid_mode, refuse_exec_start, stray, bad_unit,
                                                   workload)}


def main() -> int:
    action, target = sys.argv[1], Target.load(sys.argv[2])
    try:
        print(json.dumps({"ok": True, **ACTIONS[action](target)}, default=str))
        return 0
    except MigrationError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1


if __name__ == "__main__":
    sys.exit(main())
