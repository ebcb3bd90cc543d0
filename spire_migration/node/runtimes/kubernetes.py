"""The workload as the guide's Deployment ``mtls-app`` (pods labelled ``app=mtls-demo``).

Uses the ``kubernetes`` Python client only (kubeconfig from
``workload.kubeconfig``, else the client's default). deploy() is the guide's
step 9 done safely: delete the old Deployment and wait until it and its pods
are gone, create the phase's manifest, poll until ``availableReplicas``.

The manifest is the phase's file (``workload.manifest_phase3/4``) with what
only the suite knows filled in: the agent's socket path on the node, the image,
the peer ID and port, extra read-only host mounts, and ``SPIRE_AGENT_ID``
(phase 4: it cannot be written in a manifest ahead of attestation).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import datetime, timezone
from typing import Any

import yaml

from spire_migration.errors import WorkloadError
from spire_migration.node.runtimes.base import CONFIG_LABEL, PHASE_LABEL, WorkloadInstance, WorkloadRuntime


def _set_env(container: dict, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for item in env:
        if item.get("name") == name:
            item.pop("valueFrom", None)
            item["value"] = value
            return
    env.append({"name": name, "value": value})


def _api_error(exc) -> str:
    """``HTTP 422 Unprocessable Entity: <the API server's message>`` from an ApiException."""
    msg = None
    try:
        status = json.loads(exc.body or "")
        msg = status.get("message")
        causes = (status.get("details") or {}).get("causes") or []
        if causes and not msg:
            msg = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes)
    except (ValueError, TypeError, AttributeError):
        pass
    return f"HTTP {exc.status} {exc.reason}: {msg or exc.body or ''}".strip()


class KubernetesRuntime(WorkloadRuntime):
    name = "kubernetes"

    def __init__(self, target) -> None:
        super().__init__(target)
        self._apis = None
        self.container = self.spec.container_label.partition("=")[2] or "mtls-app"

    # -- connection -----------------------------------------------------------------
    def _k8s(self):
        if self._apis is None:
            from kubernetes import client, config

            where = str(self.spec.kubeconfig) if self.spec.kubeconfig else None
            try:
                api = config.new_client_from_config(config_file=where)
            except Exception as exc:  # noqa: BLE001 - missing/invalid kubeconfig
                raise WorkloadError(f"cannot load kubeconfig {where or '(default ~/.kube/config)'}",
                                    expected="a readable kubeconfig", found=f"{type(exc).__name__}: {exc}",
                                    remedy="set workload.kubeconfig") from exc
            self._apis = (api, client.AppsV1Api(api), client.CoreV1Api(api))
        return self._apis

    def check_reachable(self) -> None:
        from kubernetes import client

        api, _, _ = self._k8s()
        try:
            client.VersionApi(api).get_code(_request_timeout=10)
        except Exception as exc:  # noqa: BLE001
            raise WorkloadError(f"the Kubernetes API at {api.configuration.host} does not answer",
                                expected="GET /version answered", found=f"{type(exc).__name__}: {exc}",
                                remedy=f"check the cluster and kubeconfig {self.spec.kubeconfig or '(default)'}") from exc

    # -- desired state --------------------------------------------------------------
    def manifest(self, phase: int, agent_id: str | None) -> dict:
        """The Deployment deploy() would create for *phase*, with its config hash annotation."""
        self._check_phase(phase)
        path = self._resolve(self.spec.manifest_phase3 if phase == 3 else self.spec.manifest_phase4)
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise WorkloadError(f"cannot read the phase {phase} manifest {path}", expected="valid YAML",
                                found=str(exc)) from exc
        dep = next((d for d in docs if d.get("kind") == "Deployment"), None)
        if dep is None:
            raise WorkloadError(f"no Deployment in {path}", expected="kind: Deployment",
                                found=[d.get("kind") for d in docs].__repr__())
        dep = copy.deepcopy(dep)
        dep["metadata"].update(name=self.spec.deployment, namespace=self.spec.namespace)
        pod = dep["spec"]["template"]["spec"]
        container = next((c for c in pod["containers"] if c["name"] == self.container), None)
        if container is None:
            raise WorkloadError(f"no container {self.container!r} in {path}",
                                expected=f"a container named {self.container}",
                                found=[c["name"] for c in pod["containers"]].__repr__())
        container["image"] = self.spec.image
        _set_env(container, "PEER_SPIFFE_ID", self.peer_id)
        _set_env(container, "MTLS_ADDR", f"127.0.0.1:{self.spec.app_port}")
        _set_env(container, "CLIENT_INTERVAL", f"{self.spec.client_interval_s:g}")
        if phase == 4 and agent_id:
            _set_env(container, "SPIRE_AGENT_ID", agent_id)
        for vol in pod.get("volumes", []):
            if vol["name"] != "spire-agent-socket":
                continue
            if vol["hostPath"].get("type") in ("Directory", "DirectoryOrCreate"):
                # The socket's directory (survives the agent recreating its socket on restart):
                # point the app at the socket inside wherever the directory is mounted.
                vol["hostPath"]["path"] = str(self.agent_socket.parent)
                mount = next((m for m in container.get("volumeMounts", []) if m.get("name") == vol["name"]),
                             None)
                if mount is not None:
                    _set_env(container, "SPIFFE_ENDPOINT_SOCKET",
                             f"unix://{mount['mountPath'].rstrip('/')}/{self.agent_socket.name}")
            else:
                vol["hostPath"]["path"] = str(self.agent_socket)
        for i, (host, inside) in enumerate(self._ro_mounts(self.spec.ro_mounts)):
            pod.setdefault("volumes", []).append({"name": f"ro-mount-{i}", "hostPath": {"path": host}})
            container.setdefault("volumeMounts", []).append(
                {"name": f"ro-mount-{i}", "mountPath": inside, "readOnly": True})
        if tpm := self.tpm_device(phase):
            pod.setdefault("volumes", []).append(
                {"name": "tpm-device", "hostPath": {"path": tpm[0], "type": "CharDevice"}})
            container.setdefault("volumeMounts", []).append(
                {"name": "tpm-device", "mountPath": tpm[1], "readOnly": True})
        digest = hashlib.sha256(json.dumps(dep, sort_keys=True).encode()).hexdigest()
        dep["metadata"].setdefault("annotations", {})[CONFIG_LABEL] = digest
        return dep

    def _current(self):
        from kubernetes.client.exceptions import ApiException

        _, apps, _ = self._k8s()
        try:
            return apps.read_namespaced_deployment(self.spec.deployment, self.spec.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise WorkloadError(f"cannot read Deployment {self.spec.namespace}/{self.spec.deployment}",
                                expected="HTTP 200 or 404", found=f"HTTP {exc.status}: {exc.reason}") from exc

    @staticmethod
    def _is_available(dep) -> bool:
        want = dep.spec.replicas if dep.spec.replicas is not None else 1
        return ((dep.status.available_replicas or 0) >= want
                and (dep.status.observed_generation or 0) >= (dep.metadata.generation or 0))

    # -- interface ------------------------------------------------------------------
    def plan_deploy(self, phase: int, agent_id: str | None) -> list[str]:
        want = self.manifest(phase, agent_id)
        ref = f"Deployment {self.spec.namespace}/{self.spec.deployment}"
        cur = self._current()
        create = (f"create {ref} from {self._resolve(self.spec.manifest_phase3 if phase == 3 else self.spec.manifest_phase4)}"
                  f" (phase {phase}, image {self.spec.image}, SPIRE_AGENT_ID "
                  f"{agent_id if phase == 4 and agent_id else 'not set'}) and wait for availableReplicas")
        if cur is None:
            return [create]
        same = (cur.metadata.annotations or {}).get(CONFIG_LABEL) == want["metadata"]["annotations"][CONFIG_LABEL]
        if same and self._is_available(cur):
            return []
        old = (cur.metadata.labels or {}).get(PHASE_LABEL, "?")
        return [f"delete {ref} (phase {old}, available {cur.status.available_replicas or 0}/{cur.spec.replicas})"
                " and wait until its pods are gone", create]

    def deploy(self, phase: int, agent_id: str | None, timeout: float) -> list[WorkloadInstance]:
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        self.check_reachable()
        if not self.plan_deploy(phase, agent_id):
            return self.instances()
        body = self.manifest(phase, agent_id)
        _, apps, _ = self._k8s()
        ns, name = self.spec.namespace, self.spec.deployment
        self._validate(phase, body)
        if self._current() is not None:
            try:
                apps.delete_namespaced_deployment(name, ns, propagation_policy="Foreground")
            except ApiException as exc:
                if exc.status != 404:
                    raise WorkloadError(f"cannot delete Deployment {ns}/{name}", expected="deleted",
                                        found=_api_error(exc)) from exc
            self._poll(lambda: self._current() is None and not self.instances(), deadline,
                       f"Deployment {ns}/{name} and its pods gone")
        try:
            apps.create_namespaced_deployment(ns, body)
        except ApiException as exc:
            raise WorkloadError(f"cannot create Deployment {ns}/{name}", expected="created",
                                found=_api_error(exc)) from exc
        self._poll(lambda: (d := self._current()) is not None and self._is_available(d), deadline,
                   f"Deployment {ns}/{name} available")
        return self.instances()

    def _validate(self, phase: int, body: dict) -> None:
        """Have the API server validate and admit *body* (server-side dry run) before anything is deleted.

        The guide's step 9 deletes the old Deployment before creating the new one: a
        manifest the API server refuses (an unknown hostPath type, a bad field) must
        fail here, while the Phase 3 workload still runs. The probe uses a generated
        name so it never collides with the Deployment that exists.
        """
        from kubernetes.client.exceptions import ApiException

        _, apps, _ = self._k8s()
        ns, name = self.spec.namespace, self.spec.deployment
        probe = copy.deepcopy(body)
        probe["metadata"].pop("name", None)
        probe["metadata"]["generateName"] = f"{name}-"
        path = self._resolve(self.spec.manifest_phase3 if phase == 3 else self.spec.manifest_phase4)
        try:
            apps.create_namespaced_deployment(ns, probe, dry_run="All")
        except ApiException as exc:
            if exc.status in (400, 403, 422):
                raise WorkloadError(f"the API server refused the phase {phase} Deployment {ns}/{name} "
                                    f"from {path}", expected="a manifest the API server accepts",
                                    found=_api_error(exc),
                                    remedy=f"fix {path}; nothing was deleted, the current workload still runs"
                                    ) from exc
            raise WorkloadError(f"cannot validate Deployment {ns}/{name} (server-side dry run)",
                                expected="HTTP 201", found=_api_error(exc)) from exc

    def _poll(self, done, deadline: float, what: str) -> None:
        while not done():
            if time.monotonic() >= deadline:
                pods = "; ".join(f"{i.name}: {i.state}" for i in self.instances()) or "no pods"
                raise WorkloadError(f"timed out waiting for {what}", expected=what, found=pods,
                                    remedy="kubectl describe pod -l " + self.spec.label_selector)
            time.sleep(0.5)

    def instances(self) -> list[WorkloadInstance]:
        _, _, core = self._k8s()
        pods = core.list_namespaced_pod(self.spec.namespace, label_selector=self.spec.label_selector).items
        out = []
        for p in pods:
            labels = p.metadata.labels or {}
            state = "Terminating" if p.metadata.deletion_timestamp else (p.status.phase or "Unknown")
            ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
            if state == "Running" and not ready:
                state = "Running (not ready)"
            phase = labels.get(PHASE_LABEL, "")
            out.append(WorkloadInstance(name=p.metadata.name, id=p.metadata.uid, state=state,
                                        phase=int(phase) if phase.isdigit() else None,
                                        started_at=p.status.start_time, labels=labels))
        return out

    def logs(self, instance: WorkloadInstance, since: datetime | None = None) -> str:
        _, _, core = self._k8s()
        kwargs: dict[str, Any] = {"container": self.container}
        if since is not None:
            since = since if since.tzinfo else since.astimezone()
            kwargs["since_seconds"] = max(1, int((datetime.now(timezone.utc) - since).total_seconds()) + 1)
        return core.read_namespaced_pod_log(instance.name, self.spec.namespace, **kwargs)

    def check(self, timeout: float) -> dict:
        from kubernetes.stream import stream

        running = [i for i in self.instances() if i.state == "Running"] or \
                  [i for i in self.instances() if i.state.startswith("Running")]
        if not running:
            raise WorkloadError("no running pod to check", expected=f"a Running pod ({self.spec.label_selector})",
                                found="; ".join(f"{i.name}: {i.state}" for i in self.instances()) or "no pods",
                                remedy="deploy the workload")
        _, _, core = self._k8s()
        out = stream(core.connect_get_namespaced_pod_exec, running[0].name, self.spec.namespace,
                     container=self.container,
                     command=["python3", "/app/mtls_app.py", "check", "--timeout", f"{timeout:g}"],
                     stdout=True, stderr=False, stdin=False, tty=False, _request_timeout=timeout + 10)
        lines = [ln for ln in str(out).splitlines() if ln.startswith("{")]
        if not lines:
            raise WorkloadError(f"`check` in pod {running[0].name} printed no JSON line",
                                expected="one JSON line", found=str(out)[-500:])
        return json.loads(lines[-1])
