"""Fleet benchmark (issue 12, section 5): SVID availability during a node's migration, agent part, fleet waves.

    python benchmarks/bench_fleet.py single [--order guide=CHECKOUT] [--order new=CHECKOUT] [--agents 2]
        [--out FILE] [--root-prefix P]

``single``: per order, a fresh single-host lab (``lab up --agents N``, real SPIRE, swtpm, the lab's
dockerd); an SVID probe (workload/svid_probe.py, one X.509 fetch every 100 ms, 0.5 s deadline each)
runs on every node *as the workload*: a container in the lab's dockerd carrying the workload's
docker labels, so the agent's docker attestor gives it the workload's entry. Then
``spire-migration migrate --target <node-1>`` of CHECKOUT (a checkout of this project: the guide's
order on a commit before make-before-break, the new order on one after; each run with this
checkout's virtual environment) migrates node-1; node-2.. are the nodes that must see no failure.
Recorded per order: the migrate wall time, each scenario's duration (from ``--progress json``,
stamped on receipt), and per node the probe's figures over the migrate window (longest gap between
two successful fetches, the longest run of failures, failed fetches, the serials seen), with the
load average before and after and the memory (RSS) of the lab's processes.

Results are merged into ``--out`` (default benchmarks/results-fleet.json) under their section, so
sections can be run one at a time. Figures are wall clock on this machine, under whatever load it
carries (recorded with every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from lab import core, docker_engine  # noqa: E402
from lab.layout import Layout, private_base  # noqa: E402
from spire_migration.config.target import Target  # noqa: E402
from spire_migration.node import services  # noqa: E402
from spire_migration.retry import poll  # noqa: E402
from workload import svid_probe  # noqa: E402

PROBE_DIR_IN_CONTAINER = "/probe"
OUT_DIR_IN_CONTAINER = "/probe-out"
SOCKET_DIR_IN_CONTAINER = "/run/spire/agent-sockets"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _rss_mib(pid: int | None) -> float:
    """Resident memory of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, TypeError):
        pass
    return 0.0


class DockerProbe:
    """The probe as a container of the lab's dockerd, labelled as the workload (docker selectors)."""

    def __init__(self, t: Target, out_dir: Path) -> None:
        import docker

        self.t, self.name = t, f"{t.node}-svid-probe"
        self.out = out_dir / f"{t.node}.jsonl"
        self.client = docker.DockerClient(base_url=t.workload.docker_host, timeout=30)
        self.container = None

    def _labels(self) -> dict[str, str]:
        labels = {}
        for sel in self.t.workload.selectors:   # docker:label:KEY:VALUE
            kind, _, rest = sel.partition(":")
            if kind == "docker" and rest.startswith("label:"):
                key, _, value = rest.removeprefix("label:").rpartition(":")
                labels[key] = value
        return labels

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("")
        sock = self.t.workload.agent_socket or self.t.agent.socket
        volumes = {str(sock.parent): {"bind": SOCKET_DIR_IN_CONTAINER, "mode": "ro"},
                   str(PROJECT / "workload"): {"bind": PROBE_DIR_IN_CONTAINER, "mode": "ro"},
                   str(self.out.parent): {"bind": OUT_DIR_IN_CONTAINER, "mode": "rw"}}
        for spec in docker_engine.python_mounts():
            host, inside, _ = spec.split(":")
            volumes[host] = {"bind": inside, "mode": "ro"}
        self.container = self.client.containers.run(
            self.t.workload.image, name=self.name, detach=True, labels=self._labels(), volumes=volumes,
            network_mode="none", entrypoint=[docker_engine.interpreter(), f"{PROBE_DIR_IN_CONTAINER}/svid_probe.py"],
            command=["--out", f"{OUT_DIR_IN_CONTAINER}/{self.out.name}"],
            environment={svid_probe.SOCKET_ENV: f"unix://{SOCKET_DIR_IN_CONTAINER}/{sock.name}"})

    def records(self) -> list[dict[str, Any]]:
        return svid_probe.read_records(str(self.out))

    def ok_after(self, t: float) -> bool:
        return any(r["ok"] and r["t"] > t for r in self.records())

    def stop(self) -> None:
        """SIGTERM to the probe's pid (the container's main process), then remove the container."""
        if self.container is None:
            return
        self.container.reload()
        pid = self.container.attrs["State"]["Pid"]
        if pid:
            os.kill(pid, signal.SIGTERM)
        self.container.wait(timeout=30)
        self.container.remove(force=True)
        self.container = None


class HostProbe:
    """The probe inside a fleet lab host, run as the workload's uid (its ``unix:uid`` entry) by ``docker exec``.

    The checkout and its venv are bind-mounted in every host at their paths here; the probe's file is
    in the host's /tmp; it is stopped by its pid there (SIGTERM through ``docker exec kill``)."""

    OUT = "/tmp/svid-probe.jsonl"

    def __init__(self, docker_host: str, container: str, name: str, uid: int = 1001,
                 socket: str = "/tmp/spire-agent/public/api.sock") -> None:
        self.docker_host, self.container, self.name, self.uid, self.socket = docker_host, container, name, uid, socket
        self._last: list[dict[str, Any]] = []

    def _exec(self, *argv: str, opts: tuple[str, ...] = (), check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.docker_host, "exec", *opts, self.container, *argv],
                              capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> None:
        self._exec("rm", "-f", self.OUT)
        self._exec(sys.executable, str(PROJECT / "workload" / "svid_probe.py"), "--out", self.OUT,
                   opts=("-d", "-u", str(self.uid), "-e", f"{svid_probe.SOCKET_ENV}=unix://{self.socket}"))

    def _lines(self) -> list[dict[str, Any]]:
        out = self._exec("cat", self.OUT, check=False).stdout
        lines = []
        for line in out.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def records(self) -> list[dict[str, Any]]:
        self._last = [r for r in self._lines() if "t" in r]
        return self._last

    def ok_after(self, t: float) -> bool:
        return any(r["ok"] and r["t"] > t for r in self.records())

    def stop(self) -> None:
        lines = self._lines()
        if not lines or "pid" not in lines[0] or any("stop" in line for line in lines):
            return
        self._exec("kill", "-TERM", str(lines[0]["pid"]), opts=("-u", str(self.uid)), check=False)
        poll(lambda: any("stop" in line for line in self._lines()), timeout=30, what=f"the probe of {self.name} to stop")


class MemorySampler:
    """Each lab host's memory (its container's cgroup), sampled every second: idle and peak, MiB."""

    def __init__(self, containers: dict[str, str]) -> None:
        import threading

        self.containers, self.peak, self.first = containers, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read(cid: str) -> int | None:
        for path in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes",
                     f"/sys/fs/cgroup/docker/{cid}/memory.current",
                     f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current"):
            try:
                return int(Path(path).read_text())
            except (OSError, ValueError):
                continue
        return None

    @staticmethod
    def cpu_s(cid: str) -> float | None:
        """CPU seconds the host's processes used so far (cgroup v1 cpuacct.usage)."""
        try:
            return int(Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def _sample(self) -> None:
        for name, cid in self.containers.items():
            if (b := self.read(cid)) is not None:
                mib = round(b / 2**20, 1)
                self.first.setdefault(name, mib)
                self.peak[name] = max(self.peak.get(name, 0.0), mib)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def __enter__(self) -> "MemorySampler":
        self.cpu0 = {n: self.cpu_s(c) for n, c in self.containers.items()}
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu1 = {n: self.cpu_s(c) for n, c in self.containers.items()}
        self._stop.set()
        self._thread.join(timeout=5)

    def report(self) -> dict[str, dict[str, float]]:
        return {n: {"before_mib": self.first.get(n), "peak_mib": self.peak.get(n)} for n in self.containers}

    def cpu_report(self) -> dict[str, float | None]:
        return {n: round(self.cpu1[n] - self.cpu0[n], 2) if self.cpu0.get(n) is not None and self.cpu1.get(n)
                is not None else None for n in self.containers}


def _migrate(checkout: Path, target: Path) -> dict[str, Any]:
    """``spire-migration migrate`` of ``checkout`` (this venv's Python): wall time, scenario durations."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "spire_migration.cli", "migrate", "--target", str(target), "--progress", "json"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scenarios, events = [], []
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        ev["mono"] = round(time.monotonic(), 3)
        events.append(ev)
        if ev["event"] == "scenario_end":
            scenarios.append({"label": ev.get("label"), "scenario": ev.get("scenario"), "outcome": ev.get("outcome"),
                              "duration_s": ev.get("duration"), "end": ev["mono"]})
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    t1 = time.monotonic()
    if rc != 0:
        raise SystemExit(f"migrate ({checkout}) failed with exit {rc}:\n{err[-3000:]}")
    return {"t0": t0, "t1": t1, "wall_s": round(t1 - t0, 2), "scenarios": scenarios,
            "command": " ".join(["spire-migration", "migrate", "--target", str(target)])}


# -- the fleet ---------------------------------------------------------------------------
HOST_TARGET = "/etc/spire-migration/target.toml"
DRIVERS = {"parts": "parts (threads, the playbook's order: server part, then each wave's nodes in parallel)",
           "playbook": "ansible-playbook fleet/migrate.yml (SSH), server part + waves; finalize/audit/report apart"}
AGENT_PARTS = ("agent-prepare", "make", "agent-switch", "break", "agent-finish")
ON_SERVER = ("make", "break")


def waves(n: int, serial: list[str]) -> list[int]:
    """Ansible's ``serial`` batch sizes for ``n`` hosts (``["1", "25%", "100%"]``; the last repeats).

    >>> waves(8, ["1", "25%", "100%"]), waves(4, ["1", "25%", "100%"]), waves(1, ["1", "100%"])
    ([1, 2, 5], [1, 1, 2], [1])
    """
    sizes, left, i = [], n, 0
    while left > 0:
        item = serial[min(i, len(serial) - 1)]
        size = max(1, int(n * float(item[:-1]) / 100)) if item.endswith("%") else int(item)
        sizes.append(min(size, left))
        left -= sizes[-1]
        i += 1
    return sizes


class Fleet:
    """A fleet lab's hosts (containers of the lab's dockerd) and the suite run in them by ``docker exec``."""

    def __init__(self, root: Path, settle_s: float = 0.0) -> None:
        self.root, self.settle_s = root, settle_s
        self.docker_host = Layout(root.resolve()).docker_host
        hosts = json.loads((root / "fleet" / "hosts.json").read_text())["hosts"]   # lab up --fleet's state
        self.containers = {h["name"]: h["container"] for h in hosts}
        self.agents = sorted((h for h in self.containers if h != "server"), key=lambda h: (len(h), h))
        self.spire_migration = str(Path(sys.executable).parent / "spire-migration")

    def exec(self, host: str, *argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", "-H", self.docker_host, "exec", self.containers[host], *argv],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{host}: {' '.join(argv[:6])}: exit {proc.returncode}\n"
                               f"{(proc.stdout + proc.stderr)[-2500:]}")
        return proc

    def part(self, host: str, part: str, handoff: str | None = None) -> float:
        """One part of the migration on ``host``: its wall time."""
        argv = [self.spire_migration, "migrate", "--target", HOST_TARGET, "--part", part, "-q", "--progress", "off"]
        if handoff:
            argv += ["--handoff", handoff]
        t0 = time.monotonic()
        self.exec(host, *argv)
        return time.monotonic() - t0

    def agent_log(self, node: str) -> str:
        """The node's agent log: /opt/spire/agent.log, or the unit's journal when it logs there."""
        path = self.root / "hosts" / node / "opt-spire" / "agent.log"
        if path.exists():
            return path.read_text(errors="replace")
        return self.exec(node, "journalctl", "-u", "spire-agent.service", "--no-pager", "-o", "cat", check=False).stdout

    def hand_over(self, node: str) -> str:
        """Copy the node's handoff (no secret in it) to the server host; its path there."""
        text = self.exec(node, "sh", "-c", "cat /var/lib/spire-migration/*/handoff.json").stdout
        inside = f"/opt/spire/handoffs/{node}.json"
        proc = subprocess.run(["docker", "-H", self.docker_host, "exec", "-i", self.containers["server"], "sh", "-c",
                               f"umask 077; mkdir -p /opt/spire/handoffs && cat > {inside}"],
                              input=text, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"handoff of {node} to the server host: {proc.stderr[-1000:]}")
        return inside

    def agent_part(self, node: str) -> dict[str, Any]:
        """The agent part of ``node``, make before break, each part where it runs: timings (monotonic)."""
        rec: dict[str, Any] = {"start": time.monotonic(), "parts": {}}
        handoff = None
        for part in AGENT_PARTS:
            if part == "make":
                t0 = time.monotonic()
                handoff = self.hand_over(node)
                rec["parts"]["handoff_copy"] = round(time.monotonic() - t0, 2)
            if part == "agent-switch" and self.settle_s:
                time.sleep(self.settle_s)   # --settle: an experiment on where the gap goes, never the default
                rec["parts"]["settle"] = self.settle_s
            rec["parts"][part] = round(self.part("server" if part in ON_SERVER else node, part,
                                                 handoff if part in ON_SERVER else None), 2)
        rec["end"] = time.monotonic()
        rec["wall_s"] = round(rec["end"] - rec["start"], 2)
        return rec


_LOG_MARKS = {"attested": "Node attestation was successful", "apis_started": "Starting agent APIs",
              "workload_entry_received": 'msg="Entry created"', "workload_svid_created": 'msg="Creating X509-SVID"'}


def _agent_log_marks(text: str, since_unix: float) -> dict[str, float | None]:
    """Seconds after ``since_unix`` at which the agent's log (1 s resolution) first shows each mark."""
    from datetime import datetime

    marks: dict[str, float | None] = dict.fromkeys(_LOG_MARKS)
    for line in text.splitlines():
        if not line.startswith('time="'):
            continue
        ts = datetime.fromisoformat(line[6:26].replace("Z", "+00:00")).timestamp()
        if ts < int(since_unix):
            continue
        for key, needle in _LOG_MARKS.items():
            if marks[key] is None and needle in line and (key.startswith("a") or "k8s-workload" in line):
                marks[key] = round(ts - since_unix, 1)
    return marks


def _drive_parts(fleet: Fleet, sizes: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    """The playbook's order, by hand: the server part, then each wave's nodes in parallel threads."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.monotonic()
    fleet.part("server", "server")
    out: dict[str, Any] = {"server_part": {"start": t0, "end": time.monotonic()}, "nodes": {}, "waves": []}
    log(f"  server part {out['server_part']['end'] - t0:.1f} s")
    queue = list(fleet.agents)
    for i, size in enumerate(sizes, 1):
        wave, queue = queue[:size], queue[size:]
        w0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            for node, rec in zip(wave, pool.map(fleet.agent_part, wave)):
                out["nodes"][node] = {"wave": i, **rec}
        out["waves"].append({"wave": i, "nodes": wave, "wall_s": round(time.monotonic() - w0, 2)})
        log(f"  wave {i} ({len(wave)} nodes) {time.monotonic() - w0:.1f} s")
    return out


def _drive_playbook(fleet: Fleet, sizes: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    """``ansible-playbook fleet/migrate.yml`` on the lab's inventory (SSH to each host's sshd): the
    plays' and waves' times from its output, stamped on receipt (a wave: from its first task to the
    next wave's first task, or to the finalize play); the fleet report's per-node records."""
    reports = fleet.root / "fleet-reports"
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(fleet.root / "fleet" / "inventory.ini"),
           "migrate.yml", "-e", f"spire_report_dir={reports}", "-e", json.dumps({"spire_waves": sizes})]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT / "fleet", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[float, str]] = []
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        if line.startswith(("PLAY [", "TASK [")):
            marks.append((time.monotonic(), line.split("[", 1)[1].rsplit("]", 1)[0]))
    rc = proc.wait()
    t_end = time.monotonic()
    if rc != 0:
        raise SystemExit(f"ansible-playbook failed with exit {rc}:\n{''.join(tail)[-4000:]}")

    def first(pred: Callable[[str], bool]) -> float:
        return next(t for t, name in marks if pred(name))
    server0 = first(lambda n: n.startswith("server part"))
    agents0 = first(lambda n: n == "agent nodes in waves")
    finalize0 = first(lambda n: n.startswith("finalize"))
    starts = [first(lambda n, i=i: n.startswith(f"wave {i}/")) for i in range(1, len(sizes) + 1)]
    ends = starts[1:] + [finalize0]
    queue, out = list(fleet.agents), {"server_part": {"start": server0, "end": agents0}, "nodes": {}, "waves": []}
    for i, (size, w0, w1) in enumerate(zip(sizes, starts, ends), 1):
        wave, queue = queue[:size], queue[size:]
        for node in wave:
            out["nodes"][node] = {"wave": i, "start": w0, "end": w1, "wall_s": round(w1 - w0, 2), "parts": {}}
        out["waves"].append({"wave": i, "nodes": wave, "wall_s": round(w1 - w0, 2)})
        log(f"  wave {i} ({len(wave)} nodes) {w1 - w0:.1f} s")
    out["after_waves_s"] = round(t_end - finalize0, 2)   # finalize, the fleet audit, the report
    out["playbook_wall_s"] = round(t_end - t0, 2)
    out["end"] = finalize0
    try:
        run = (reports / "last-run").read_text().strip()
        out["fleet_report"] = json.loads((reports / "runs" / run / "fleet-report.json").read_text())
    except (OSError, ValueError) as exc:
        out["fleet_report"] = f"not read: {exc}"
    return out


def _second_pass(fleet: Fleet) -> dict[str, float]:
    """Every part again on the first node (a migrated node: nothing changes): what one run of the
    suite costs when it has nothing to do (interpreter, pytest, collection, the checks)."""
    node = fleet.agents[0]
    handoff = f"/opt/spire/handoffs/{node}.json"
    out = {"server": round(fleet.part("server", "server"), 2)}
    for part in AGENT_PARTS:
        out[part] = round(fleet.part("server" if part in ON_SERVER else node, part,
                                     handoff if part in ON_SERVER else None), 2)
    t0 = time.monotonic()
    fleet.exec(node, sys.executable, "-c", "pass")
    out["python_startup_in_host"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    fleet.exec(node, fleet.spire_migration, "--help")
    out["entry_point_help"] = round(time.monotonic() - t0, 2)
    return out


def _fleet_size(n: int, serial: list[str], prefix: str, log: Callable[[str], None],
                settle_s: float = 0.0, second_pass: bool = False, driver: str = "parts",
                with_probes: bool = True) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}fleet{n}-", dir=private_base()))
    lab = [sys.executable, "-m", "lab"]
    probes: list[HostProbe] = []
    try:
        t0 = time.monotonic()
        up = subprocess.run([*lab, "up", "--fleet", str(n), "--root", str(root)], cwd=PROJECT,
                            capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"lab up --fleet {n} failed:\n{(up.stdout + up.stderr)[-3000:]}")
        lab_up_s = round(time.monotonic() - t0, 2)
        fleet = Fleet(root, settle_s)
        probes = [HostProbe(fleet.docker_host, fleet.containers[h], h) for h in fleet.agents] if with_probes else []
        for p in probes:
            p.start()
        started = time.monotonic()
        for p in probes:
            poll(lambda p=p: p.ok_after(started), timeout=60, what=f"the probe of {p.name} to fetch an SVID")
        log(f"fleet {n}: lab up in {lab_up_s} s, {len(probes)} probes fetching")
        with MemorySampler(fleet.containers) as mem:
            load_before = _load()
            drive = _drive_playbook if driver == "playbook" else _drive_parts
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            run = drive(fleet, waves(n, serial), log)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t1 = run.get("end") or time.monotonic()
            load_after = _load()
        t_start = run["server_part"]["start"]
        for p in probes:
            poll(lambda p=p: p.ok_after(t1), timeout=60, what=f"the probe of {p.name} to fetch after the run")
            p.stop()
        second = _second_pass(fleet) if second_pass else None
        nodes = {}
        sp = run["server_part"]
        wall0 = time.time() - time.monotonic()   # monotonic -> Unix time, for SPIRE's log lines
        by_name = {p.name: p for p in probes}
        for name in fleet.agents:
            own = run["nodes"][name]
            nodes[name] = {"wave": own["wave"], "agent_part_s": own["wall_s"], "parts_s": own["parts"],
                           "agent_log": _agent_log_marks(fleet.agent_log(name), own["start"] + wall0)}
            if (p := by_name.get(name)) is None:
                continue
            recs = p.records()
            outside = [r for r in recs if t_start <= r["t"] <= t1 and not own["start"] <= r["t"] <= own["end"]]
            nodes[name].update({
                "own_migration": svid_probe.summarise(recs, own["start"], own["end"]),
                "during_server_part": svid_probe.summarise(recs, sp["start"], sp["end"]),
                "failed_while_others_migrated": sum(1 for r in outside if not r["ok"]),
                "failures_while_others_migrated": [
                    {"at_s": round(r["t"] - t_start, 2), "ms": r["ms"], "error": r["error"][:160]}
                    for r in outside if not r["ok"]][:svid_probe.MAX_FAILURES]})
        probed = [v for v in nodes.values() if "own_migration" in v]
        extra = {k: run[k] for k in ("after_waves_s", "playbook_wall_s", "fleet_report") if k in run}
        return {"n": n, "driver": DRIVERS[driver], "serial": serial, "settle_s": settle_s, **extra,
                "waves": run["waves"], "lab_up_s": lab_up_s, "fleet_wall_s": round(t1 - t_start, 2),
                "server_part_s": round(sp["end"] - sp["start"], 2), "nodes": nodes,
                "agent_part_s_max": max(v["agent_part_s"] for v in nodes.values()),
                "probes": len(probes),
                "longest_gap_s_max": max((v["own_migration"]["longest_gap_s"] or 0 for v in probed), default=None),
                "failed_on_other_nodes": sum(v["failed_while_others_migrated"] for v in probed) if probed else None,
                "failed_during_server_part": sum(v["during_server_part"]["failed"] for v in probed) if probed else None,
                "memory_mib": mem.report(), "cpu_s": mem.cpu_report(),
                "cpu_s_total": round(sum(v or 0 for v in mem.cpu_report().values()), 1),
                "controller_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 1),
                "second_pass_s": second, "load_before": load_before, "load_after": load_after}
    finally:
        _stop_all(probes, log)
        subprocess.run([*lab, "down", "--root", str(root), "--purge"], cwd=PROJECT, capture_output=True, text=True)


def _stop_all(probes: list, log: Callable[[str], None]) -> None:
    for p in probes:
        try:
            p.stop()
        except Exception as exc:  # noqa: BLE001 - the lab goes down anyway
            log(f"probe {p.name}: {exc}")


def _lab_memory(root: Path, nodes: list[str]) -> dict[str, float]:
    lay = Layout(root.resolve())
    t = core.target_for(lay)
    srv = services.server_proc(t)
    got = {"spire_server": _rss_mib(srv.pid if srv else None)}
    for n in nodes:
        ag = services.agent_proc(core.target_for(lay, n))
        got[f"spire_agent_{n}"] = _rss_mib(ag.pid if ag else None)
    return got


def _single_order(order: str, checkout: Path, agents: int, prefix: str, log: Callable[[str], None]) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}{order}-", dir=private_base()))
    probes: list[DockerProbe] = []
    try:
        t0 = time.monotonic()
        core.up(root, agents=agents, log=lambda m: None)
        lab_up_s = round(time.monotonic() - t0, 2)
        lay = Layout(root.resolve())
        nodes = core.load_state(lay)["nodes"]
        targets = {n: core.target_for(lay, n) for n in nodes}
        probes = [DockerProbe(targets[n], root / "probe") for n in nodes]
        for p in probes:
            p.start()
        started = time.monotonic()
        for p in probes:
            poll(lambda p=p: p.ok_after(started), timeout=60, what=f"the probe of {p.t.node} to fetch an SVID")
        mem_before = _lab_memory(root, nodes)
        load_before = _load()
        log(f"{order}: lab up in {lab_up_s} s, probes fetching; migrating node-1 (load {load_before})")
        run = _migrate(checkout, root / Target.file_name(nodes[0]))
        load_after = _load()
        # the migrating node's gap may outlast the run: wait for its first success after it
        poll(lambda: probes[0].ok_after(run["t1"]), timeout=60, what="the migrated node's probe to fetch again")
        for p in probes:
            p.stop()
        per_node = {}
        for p in probes:
            s = svid_probe.summarise(p.records(), run["t0"], run["t1"])
            per_node[p.t.node] = {"role": "migrating" if p is probes[0] else "other", **s}
        mig = per_node[nodes[0]]
        t_base = run["t0"]
        for sc in run["scenarios"]:
            sc["end_s"] = round(sc.pop("end") - t_base, 2)
        return {"order": order, "checkout": str(checkout), "commit": _commit(checkout), "agents": agents,
                "lab_up_s": lab_up_s, "migrate_wall_s": run["wall_s"], "command": run["command"],
                "scenarios": run["scenarios"], "probe": per_node,
                "migrating_longest_gap_s": mig["longest_gap_s"], "migrating_failed": mig["failed"],
                "others_failed": sum(v["failed"] for k, v in per_node.items() if k != nodes[0]),
                "load_before": load_before, "load_after": load_after, "memory_mib": mem_before}
    finally:
        _stop_all(probes, log)
        core.down(root, purge=True, log=lambda m: None)


def _commit(checkout: Path) -> str:
    r = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip()


def _machine() -> dict:
    mem = {l.split(":")[0]: int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()[:3]}
    return {"nproc": os.cpu_count(), "mem_total_mib": mem["MemTotal"] // 1024,
            "mem_available_mib": mem["MemAvailable"] // 1024, "loadavg_start": list(os.getloadavg()),
            "kernel": os.uname().release}


def _dash(v: Any) -> Any:
    return "—" if v is None else v


def _table(data: dict[str, Any]) -> str:
    """The results as Markdown tables (docs/benchmark-fleet.md quotes them)."""
    rows = ["| run | order / driver | N | migrate or fleet wall s | longest gap s (migrating) | failed fetches "
            "(migrating) | failed fetches (other nodes) | agent part s (max) | load before → after |",
            "|---|---|---|---|---|---|---|---|---|"]
    for key, single in data.items():
        if not key.startswith("single"):
            continue
        for name, o in single["orders"].items():
            others = o["others_failed"]
            rows.append(f"| {key} {single['time']} | {name} ({o['commit']}) | 1 of {o['agents']} | "
                        f"{o['migrate_wall_s']} | {o['migrating_longest_gap_s']} | {o['migrating_failed']} | "
                        f"{others} | — | {o['load_before']} → {o['load_after']} |")
    for key, sec in data.items():
        if not key.startswith("fleet"):
            continue
        for s in sec["sizes"]:
            drv = s["driver"].split(" ")[0] + (f", settle {s['settle_s']:g} s" if s.get("settle_s") else "") \
                + ("" if s.get("probes", 1) else ", no probes")
            rows.append(f"| {key} {sec['time']} | {drv} | {s['n']} | {s['fleet_wall_s']}"
                        f"{' (×%s)' % s['ratio_to_one_node'] if s.get('ratio_to_one_node') and s['n'] > 1 else ''} | "
                        f"{_dash(s['longest_gap_s_max'])} | {sum(v['own_migration']['failed'] for v in s['nodes'].values() if 'own_migration' in v) if s.get('probes', 1) else '—'} | "
                        f"{_dash(s['failed_on_other_nodes'])} (server part: {_dash(s['failed_during_server_part'])}) | "
                        f"{s['agent_part_s_max']} | {s['load_before']} → {s['load_after']} |")
    mem = ["", "| run | N | server host MiB idle / peak | agent host MiB idle / peak (max over hosts) | CPU s (all hosts) |",
           "|---|---|---|---|---|"]
    for key, sec in data.items():
        if key.startswith("fleet"):
            for s in sec["sizes"]:
                m = s["memory_mib"]
                agents = [v for k, v in m.items() if k != "server"]
                mem.append(f"| {key} | {s['n']} | {m['server']['before_mib']} / {m['server']['peak_mib']} | "
                           f"{max(a['before_mib'] for a in agents)} / {max(a['peak_mib'] for a in agents)} | "
                           f"{s.get('cpu_s_total', '—')} |")
    return "\n".join(rows + mem) + "\n"


def _save(path: Path, section: str, value: Any) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    single = sub.add_parser("single", help="SVID availability on the single-host lab, per order")
    single.add_argument("--order", action="append", default=[],
                        help="NAME=CHECKOUT (repeatable); default: this checkout, named 'current'")
    single.add_argument("--agents", type=int, default=2, help="lab nodes: node-1 migrates, the others must not notice")
    single.add_argument("--section", default="single", help="the results' section (default single)")
    fleet = sub.add_parser("fleet", help="fleet labs of N hosts: the server part, then the agent nodes in waves")
    fleet.add_argument("--sizes", default="1,4,8", help="fleet sizes N (default 1,4,8)")
    fleet.add_argument("--serial", default="1,25%,100%", help="wave sizes, as the playbook's serial")
    fleet.add_argument("--settle", type=float, default=0.0,
                       help="experiment: seconds to wait between a node's make and its agent switch")
    fleet.add_argument("--section", default="fleet", help="the results' section (default fleet)")
    fleet.add_argument("--driver", choices=sorted(DRIVERS), default="parts",
                       help="who runs the parts: this harness in threads, or the playbook")
    fleet.add_argument("--no-probes", action="store_true",
                       help="no SVID probes (each costs ~6%% of a core and agent work): wall time and CPU alone")
    fleet.add_argument("--second-pass", action="store_true",
                       help="after the run, every part again on node-1 (nothing to do): the suite's fixed cost")
    for p in (single, fleet):
        p.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results-fleet.json")
        p.add_argument("--root-prefix", default="bench-", help="lab roots are fresh /run/spire-lab/<prefix>*")
    table = sub.add_parser("table", help="print the results as Markdown tables")
    table.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results-fleet.json")
    args = ap.parse_args()
    if args.mode == "table":
        print(_table(json.loads(args.out.read_text())), end="")
        return
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.mode == "single":
        orders = [o.split("=", 1) for o in args.order] or [["current", str(PROJECT)]]
        out = {"machine": _machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "orders": {}}
        for name, checkout in orders:
            out["orders"][name] = _single_order(name, Path(checkout).resolve(), args.agents, args.root_prefix, log)
            _save(args.out, args.section, out)
        o = out["orders"]
        if "guide" in o and "new" in o and o["new"]["migrating_longest_gap_s"]:
            out["gap_ratio_guide_over_new"] = round(o["guide"]["migrating_longest_gap_s"]
                                                    / o["new"]["migrating_longest_gap_s"], 1)
        _save(args.out, args.section, out)
        print(json.dumps(out, indent=2))
    else:
        out = {"machine": _machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sizes": []}
        for n in (int(x) for x in args.sizes.split(",")):
            out["sizes"].append(_fleet_size(n, args.serial.split(","), args.root_prefix, log, args.settle,
                                            args.second_pass, args.driver, not args.no_probes))
            one = next((s for s in out["sizes"] if s["n"] == 1), None)
            for s in out["sizes"]:
                if one:
                    s["ratio_to_one_node"] = round(s["fleet_wall_s"] / one["fleet_wall_s"], 2)
            _save(args.out, args.section, out)
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
