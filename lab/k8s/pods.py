"""Pods on the lab's real kubelet node, seen by SPIRE: the agent's ``k8s`` workload attestor,
the workload registered with k8s selectors, the suite's ``kubernetes`` runtime with the lab
manifests (``workload/k8s/lab/``), and a one-pod smoke run."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable

from ..errors import LabError
from spire_migration.redact import redact

from . import control_plane
from .files import write_file
from .kubelet import SMOKE_ROOT, node_root, node_state

#: The workload's ``k8s`` selectors: the guide's Deployment runs in namespace default, pods labelled
#: app=mtls-demo. Registered next to the docker-selected entry, under the same agent.
K8S_SELECTORS = ("k8s:ns:default", "k8s:pod-label:app:mtls-demo")
#: The lab variants of the guide's manifests (agent socket directory, no spire-agent binary or TPM
#: device, nodeSelector to the real node); relative to the project.
LAB_MANIFESTS = {3: Path("workload/k8s/lab/phase3/mtls-app.yaml"), 4: Path("workload/k8s/lab/phase4/mtls-app.yaml")}

Log = Callable[[str], None]


def k8s_attestor_body(read_only_port: int) -> str:
    """SPIRE's ``k8s`` workload attestor, reading the lab kubelet's read-only port on 127.0.0.1."""
    return f"""# Pods on the lab's real kubelet node: pod selectors from the kubelet's /pods
# (read-only port, 127.0.0.1 only). Added by lab/k8s/pods.py. The legacy container
# locator finds containers only under a pod's cgroup (kubepods/.../pod<uid>/<id>): the
# new one also takes the lab's docker containers (/docker/<id>, not pods of this kubelet)
# for pods, polls the kubelet for them and fails their attestation after 30 s.
plugin_data {{
    kubelet_read_only_port = {read_only_port}
    use_new_container_locator = false
}}
"""


def add_k8s_attestor(agent_conf: Path, read_only_port: int) -> bool:
    """Add (or re-point) the ``k8s`` workload attestor in *agent_conf*, next to the docker one.

    Returns True when the file changed (the agent must be restarted to load it).
    """
    from spire_migration.config.hclconfig import HclConfig

    cfg = HclConfig.load(agent_conf)
    if "docker" not in cfg.plugins("WorkloadAttestor"):
        raise LabError("no docker WorkloadAttestor in the agent config", expected=str(agent_conf),
                       found="no 'WorkloadAttestor \"docker\"' block")
    new = cfg.with_plugin("WorkloadAttestor", "k8s", k8s_attestor_body(read_only_port))
    if new.text == cfg.text:
        return False
    write_file(agent_conf, new.text, agent_conf.stat().st_mode & 0o7777)
    return True


def attest_pods(lab_root: Path, target, *, log: Log = print) -> str:
    """Have *target*'s agent attest the pods of the lab's kubelet node: add the ``k8s`` workload
    attestor (restarting the agent when its config changed) and register the workload with
    :data:`K8S_SELECTORS` under the agent's ID (once). Returns the agent's SPIFFE ID."""
    from spire_migration.node import services

    state = node_state(lab_root)
    if not state:
        raise LabError("no kubelet node under the lab root", expected=str(node_root(lab_root) / "node.json"),
                       found="missing", remedy="lab.k8s.kubelet.up(lab_root) first")
    if add_k8s_attestor(target.agent.config, state["read_only_port"]):
        services.stop_agent(target)
        agent_id = services.wait_agent_ready(target, services.start_agent(target))
        log(f"spire-agent restarted with the k8s workload attestor (kubelet 127.0.0.1:{state['read_only_port']})")
    else:
        agent_id = services.agent_identity(target)
    server = services.server_cli(target)
    want = sorted(K8S_SELECTORS)
    have = [e for e in server.entries()
            if sorted(f"{s['type']}:{s['value']}" for s in e.get("selectors", [])) == want]
    if not have:
        result = server.create_entries([{"spiffe_id": target.workload.spiffe_id, "parent_id": agent_id,
                                         "selectors": [dict(zip(("type", "value"), s.split(":", 1)))
                                                       for s in K8S_SELECTORS]}])
        if result.failed:
            raise LabError("could not register the k8s-selected workload", expected="entry created",
                           found=str(result.failed))
        log(redact(f"registered {target.workload.spiffe_id} ({', '.join(K8S_SELECTORS)}) under {agent_id}"))
    return agent_id


def pod_runtime(lab_root: Path, target):
    """The suite's ``kubernetes`` runtime for the real node: the lab's cluster and manifests."""
    from spire_migration.node.runtimes import get_runtime

    workload = dataclasses.replace(target.workload, runtime="kubernetes",
                                   kubeconfig=control_plane.kubeconfig_path(lab_root),
                                   manifest_phase3=LAB_MANIFESTS[3], manifest_phase4=LAB_MANIFESTS[4],
                                   selectors=list(K8S_SELECTORS))
    return get_runtime(dataclasses.replace(target, workload=workload))


def _poll(what: Callable[[], bool], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(interval)
    return False


def pod_smoke(lab_root: Path, node: str, timeout: float = 120.0) -> str:
    """Run one pod of the workload image on *node* (host Python bind-mounted read-only, as with
    docker); return its log as read through the API server. The pod is deleted afterwards."""
    from kubernetes.client.exceptions import ApiException

    core = control_plane.core_api(control_plane.kubeconfig_path(lab_root))
    prefix = os.path.realpath(sys.base_prefix)
    python = os.path.join(prefix, "bin", "python3")
    name = "kubelet-smoke"
    marker = "kubelet smoke: a real pod ran"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": node, "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": "spire-migration/mtls-app:lab",
                                    "imagePullPolicy": "Never",
                                    "command": [python, "-c",
                                                f"import os; print({marker!r}, 'pid', os.getpid(), "
                                                "open('/proc/self/cgroup').read().split()[0])"],
                                    "volumeMounts": [{"name": "py", "mountPath": prefix, "readOnly": True},
                                                     {"name": "usr", "mountPath": "/usr", "readOnly": True}]}],
                    "volumes": [{"name": "py", "hostPath": {"path": prefix, "type": "Directory"}},
                                {"name": "usr", "hostPath": {"path": "/usr", "type": "Directory"}}]}}

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, "default")
        except ApiException as exc:
            return exc.status == 404
        return False

    def delete() -> None:
        try:
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        _poll(gone, 60, 0.5)

    def create() -> str:
        # a fresh control plane: the service account controller may not have made "default" yet
        sa_deadline = time.monotonic() + 30
        while True:
            try:
                return core.create_namespaced_pod("default", pod).metadata.uid
            except ApiException as exc:
                if not (exc.status == 403 and "serviceaccount" in (exc.body or "")
                        and time.monotonic() < sa_deadline):
                    raise
                time.sleep(0.5)

    delete()
    uid = create()
    try:
        phase = [None]

        def finished() -> bool:
            phase[0] = core.read_namespaced_pod(name, "default").status.phase
            return phase[0] in ("Succeeded", "Failed")

        text = core.read_namespaced_pod_log(name, "default") if _poll(finished, timeout, 1.0) else ""
        if phase[0] != "Succeeded" or marker not in text:
            events = core.list_namespaced_event("default", field_selector=f"involvedObject.uid={uid}")
            found = "\n".join(f"{e.reason}: {e.message}" for e in events.items[-15:])
            raise LabError(f"pod {name} did not run on node {node}", expected=f"phase Succeeded, log {marker!r}",
                           found=f"phase {phase[0]}; log {text!r}\n{found}",
                           remedy=f"read {SMOKE_ROOT / 'kubelet.log'} and the containerd log")
        return text
    finally:
        delete()
