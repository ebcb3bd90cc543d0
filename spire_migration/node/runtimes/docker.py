"""The workload as two docker containers: ``mtls-server`` and ``mtls-client``.

Both run the workload image (``spec.image``) on the host network, labelled as
kubelet labels a pod's container (``io.kubernetes.container.name=mtls-app``,
``io.kubernetes.pod.namespace=default``), so the guide's docker selectors
match them, plus ``phase=<3|4>``. The directory of the agent's Workload API
socket is bind-mounted read-only at /run/spire/agent-sockets (a directory, not
the socket file: a restarted agent re-creates its socket, which a file bind
mount would not follow). Uses the ``docker`` Python SDK.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone

from spire_migration.errors import WorkloadError
from spire_migration.node.runtimes.base import CONFIG_LABEL, PHASE_LABEL, WorkloadInstance, WorkloadRuntime

SOCKET_DIR_IN_CONTAINER = "/run/spire/agent-sockets"
WORKLOAD_LABEL = "io.spire-migration.workload"
ROLE_LABEL = "io.spire-migration.role"


def _parse_time(text: str | None) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}").replace(tzinfo=timezone.utc)


class DockerRuntime(WorkloadRuntime):
    name = "docker"

    def __init__(self, target) -> None:
        super().__init__(target)
        self._client = None

    # -- connection -----------------------------------------------------------------
    def _docker(self, timeout: float = 60):
        import docker  # the docker SDK: imported here so the kubernetes runtime needs none of it

        if self._client is None:
            self._client = docker.DockerClient(base_url=self.spec.docker_host, timeout=int(timeout))
        return self._client

    def check_reachable(self) -> None:
        try:
            self._docker().ping()
        except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
            self._client = None
            raise WorkloadError(f"the Docker API at {self.spec.docker_host} does not answer",
                                expected="a Docker engine answering /_ping",
                                found=f"{type(exc).__name__}: {exc}",
                                remedy="start dockerd, or set workload.docker_host") from exc

    # -- desired state --------------------------------------------------------------
    def _labels(self, phase: int, role: str) -> dict[str, str]:
        labels = {}
        for pair in (self.spec.container_label, self.spec.label_selector):
            key, _, value = pair.partition("=")
            labels[key.strip()] = value.strip()
        labels.update({"io.kubernetes.pod.namespace": self.spec.namespace, PHASE_LABEL: str(phase),
                       WORKLOAD_LABEL: self.spec.deployment, ROLE_LABEL: role})
        return labels

    def _desired(self, phase: int, agent_id: str | None, image_id: str) -> dict[str, dict]:
        env = {
            "SPIFFE_ENDPOINT_SOCKET": f"unix://{SOCKET_DIR_IN_CONTAINER}/{self.agent_socket.name}",
            "PEER_SPIFFE_ID": self.peer_id,
            "MTLS_ADDR": f"127.0.0.1:{self.spec.app_port}",
            "CLIENT_INTERVAL": f"{self.spec.client_interval_s:g}",
        }
        if phase == 4 and agent_id:
            env["SPIRE_AGENT_ID"] = agent_id
        volumes = {str(self.agent_socket.parent): {"bind": SOCKET_DIR_IN_CONTAINER, "mode": "ro"}}
        for host, inside in self._ro_mounts(self.spec.ro_mounts):
            volumes[host] = {"bind": inside, "mode": "ro"}
        out = {}
        for role, name in (("server", self.spec.server_container), ("client", self.spec.client_container)):
            cfg = {"name": name, "image": self.spec.image, "command": [role], "environment": env,
                   "labels": self._labels(phase, role), "volumes": volumes, "network_mode": "host"}
            if tpm := self.tpm_device(phase):
                cfg["devices"] = [f"{tpm[0]}:{tpm[1]}:rw"]
            digest = hashlib.sha256(json.dumps([cfg, image_id], sort_keys=True).encode()).hexdigest()
            cfg["labels"] = {**cfg["labels"], CONFIG_LABEL: digest}
            out[name] = cfg
        return out

    def _image_id(self) -> str | None:
        import docker

        try:
            return self._docker().images.get(self.spec.image).id
        except docker.errors.ImageNotFound:
            return None

    def _containers(self) -> list:
        by_label = self._docker().containers.list(all=True, filters={"label": f"{WORKLOAD_LABEL}={self.spec.deployment}"})
        seen = {c.id for c in by_label}
        for name in (self.spec.server_container, self.spec.client_container):
            for c in self._docker().containers.list(all=True, filters={"name": f"^/{name}$"}):
                if c.id not in seen:
                    by_label.append(c)
                    seen.add(c.id)
        return by_label

    # -- interface ------------------------------------------------------------------
    def instances(self) -> list[WorkloadInstance]:
        return [self._instance(c) for c in self._containers()]

    @staticmethod
    def _instance(c) -> WorkloadInstance:
        labels = c.labels or {}
        phase = labels.get(PHASE_LABEL)
        return WorkloadInstance(name=c.name, id=c.id, state=c.attrs["State"]["Status"],
                                phase=int(phase) if phase and phase.isdigit() else None,
                                started_at=_parse_time(c.attrs["State"].get("StartedAt")), labels=labels)

    def plan_deploy(self, phase: int, agent_id: str | None) -> list[str]:
        self._check_phase(phase)
        image_id = self._image_id()
        if image_id is None:
            return [f"image {self.spec.image} is missing: build it first (lab.docker_engine.build_workload_image)"]
        desired = self._desired(phase, agent_id, image_id)
        current = {c.name: c for c in self._containers()}
        lines = []
        for name, c in current.items():
            want = desired.get(name)
            if want and c.labels.get(CONFIG_LABEL) == want["labels"][CONFIG_LABEL] and c.status == "running":
                continue
            lines.append(f"remove container {name} (phase {c.labels.get(PHASE_LABEL, '?')}, {c.status})")
        for name, want in desired.items():
            c = current.get(name)
            if c and c.labels.get(CONFIG_LABEL) == want["labels"][CONFIG_LABEL] and c.status == "running":
                continue
            agent = want["environment"].get("SPIRE_AGENT_ID", "not set")
            lines.append(f"create container {name} ({want['command'][0]}): phase {phase}, image {self.spec.image}, "
                         f"Workload API {self.agent_socket}, SPIRE_AGENT_ID {agent}, authorizes {self.peer_id}")
        return lines

    def deploy(self, phase: int, agent_id: str | None, timeout: float) -> list[WorkloadInstance]:
        deadline = time.monotonic() + timeout
        self.check_reachable()
        if not self.plan_deploy(phase, agent_id):
            return self.instances()
        image_id = self._image_id()
        if image_id is None:
            raise WorkloadError(f"image {self.spec.image} is not in the engine at {self.spec.docker_host}",
                                expected="the workload image", found="no such image",
                                remedy="build it (lab.docker_engine.build_workload_image) or set workload.image")
        if not self.agent_socket.is_socket():
            raise WorkloadError(f"the agent's Workload API socket {self.agent_socket} is missing",
                                expected="a unix socket", found="not a socket" if self.agent_socket.exists() else "no such file",
                                remedy="start the SPIRE agent, or set agent.socket / workload.agent_socket")
        for c in self._containers():
            c.stop(timeout=max(1, int(min(10, deadline - time.monotonic()))))
            c.remove(force=True)
        started = []
        for cfg in self._desired(phase, agent_id, image_id).values():
            c = self._docker().containers.run(detach=True, **cfg)
            started.append(c)
        for c in started:
            self._wait_running(c, deadline)
        return self.instances()

    def _wait_running(self, c, deadline: float) -> None:
        while True:
            c.reload()
            if c.status == "running":
                return
            if c.status in ("exited", "dead") or time.monotonic() >= deadline:
                tail = c.logs(tail=10).decode(errors="replace").strip() or "(empty log)"
                raise WorkloadError(f"container {c.name} is not running", expected="state running",
                                    found=f"state {c.status}; last log lines:\n{tail}",
                                    remedy="read `docker logs` of the container")
            time.sleep(0.1)

    def logs(self, instance: WorkloadInstance, since: datetime | None = None) -> str:
        import docker

        kwargs = {"stdout": True, "stderr": True}
        if since is not None:
            kwargs["since"] = since.timestamp()
        try:
            return self._docker().containers.get(instance.id).logs(**kwargs).decode(errors="replace")
        except docker.errors.NotFound as exc:
            raise WorkloadError(f"container {instance.name} is gone", expected="the container",
                                found="no such container", remedy="deploy the workload again") from exc

    def check(self, timeout: float) -> dict:
        import docker

        try:
            c = self._docker().containers.get(self.spec.client_container)
        except docker.errors.NotFound as exc:
            raise WorkloadError(f"container {self.spec.client_container} does not exist",
                                expected="a deployed workload", found="no such container",
                                remedy="deploy the workload") from exc
        if c.status != "running":
            raise WorkloadError(f"container {c.name} is not running", expected="running", found=c.status)
        cmd = list(c.attrs["Config"].get("Entrypoint") or []) + ["check", "--timeout", f"{timeout:g}"]
        code, (out, err) = c.exec_run(cmd, demux=True)
        lines = [ln for ln in (out or b"").decode(errors="replace").splitlines() if ln.startswith("{")]
        if not lines:
            raise WorkloadError(f"`check` in {c.name} printed no JSON line", expected="one JSON line",
                                found=f"exit {code}; stderr: {(err or b'').decode(errors='replace')[-500:]}")
        result = json.loads(lines[-1])
        result["exit_code"] = code
        return result
