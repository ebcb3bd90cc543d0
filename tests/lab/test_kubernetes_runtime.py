"""The suite's `kubernetes` workload runtime against a real control plane (issue 6, tier 1).

A genuine etcd 3.6, kube-apiserver, kube-controller-manager and kube-scheduler
(built from Go modules by lab/k8s/), with one kwok node standing in for
the kubelet: pods are scheduled and reported Running/Ready at the API level, no
container runs. Everything else is real: the Deployment and ReplicaSet
controllers, garbage collection of the Phase 3 pods, the scheduler, admission
and validation of the manifests (hostPath types included) by the API server.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lab.k8s import control_plane as k8s
from lab.k8s import gobuild
from spire_migration.errors import WorkloadError
from spire_migration.node.runtimes import get_runtime
from spire_migration.config.target import Target

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
AGENT_ID = "spiffe://example.org/spire/agent/tpm_devid/0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-lab")
    try:
        t0 = time.monotonic()
        kubeconfig = k8s.up(root)
        print(f"control plane up in {time.monotonic() - t0:.1f}s")
        yield root, kubeconfig
    finally:
        k8s.down(root)


def _target(kubeconfig: Path, **workload) -> Target:
    return Target.from_dict({"workload": {"runtime": "kubernetes", "kubeconfig": str(kubeconfig),
                                          "spiffe_id": "spiffe://example.org/k8s-workload", **workload}})


def _apis(kubeconfig: Path):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    return client.AppsV1Api(api), client.CoreV1Api(api)


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def _phase3_deployment(kubeconfig: Path) -> None:
    """The Phase 3 state as an operator left it: the phase 3 manifest, applied by hand."""
    apps, _ = _apis(kubeconfig)
    docs = [d for d in yaml.safe_load_all((PROJECT / "workload/k8s/phase3/mtls-app.yaml").read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    apps.create_namespaced_deployment("default", dep)

    def available():
        d = apps.read_namespaced_deployment("mtls-app", "default")
        return (d.status.available_replicas or 0) >= 1
    _wait(available, 90, "the Phase 3 Deployment to become available (kwok node)")


def test_control_plane_is_real_and_kubectl_works(cluster):
    root, kubeconfig = cluster
    assert kubeconfig == root / "kubernetes" / "kubeconfig"
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    assert client.VersionApi(api).get_code().git_version == f"v{gobuild.K8S_VERSION}"
    nodes = client.CoreV1Api(api).list_node().items
    assert [n.metadata.name for n in nodes] == [k8s.NODE_NAME]
    out = subprocess.run([gobuild.kubectl_path(), "get", "pods", "-A", "--kubeconfig", str(kubeconfig)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith("running (pid") or ": running (pid" in line
               for line in k8s.status(root)[:len(k8s.COMPONENTS)])


def test_step9_replaces_phase3_deployment_with_phase4(cluster):
    root, kubeconfig = cluster
    _phase3_deployment(kubeconfig)
    rt = get_runtime(_target(kubeconfig, mount_tpm=True))   # the guide's optional TPM mount, opted in
    rt.check_reachable()
    before = rt.instances()
    assert before and all(i.phase == 3 for i in before), before

    plan = rt.plan_deploy(4, AGENT_ID)
    assert len(plan) == 2 and plan[0].startswith("delete Deployment default/mtls-app (phase 3"), plan

    t0 = time.monotonic()
    after = rt.deploy(4, AGENT_ID, timeout=120)
    print(f"step 9 deploy took {time.monotonic() - t0:.1f}s")
    assert after, "no pods after deploy"
    assert all(i.phase == 4 for i in after), after
    assert all(i.state == "Running" for i in after), after
    assert not {i.id for i in before} & {i.id for i in after}, "the Phase 3 pods survived"

    apps, core = _apis(kubeconfig)
    dep = apps.read_namespaced_deployment("mtls-app", "default")
    assert dep.metadata.labels["phase"] == "4"
    assert (dep.status.available_replicas or 0) >= 1
    pod = core.read_namespaced_pod(after[0].name, "default")
    assert pod.spec.node_name == k8s.NODE_NAME
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["SPIRE_AGENT_ID"] == AGENT_ID
    vols = {v.name: v.host_path for v in pod.spec.volumes if v.host_path}
    assert vols["spire-agent-socket"].type == "Socket"
    assert vols["tpm-device"].type == "CharDevice"

    # The same step again changes nothing.
    assert rt.plan_deploy(4, AGENT_ID) == []
    again = rt.deploy(4, AGENT_ID, timeout=60)
    assert {i.id for i in again} == {i.id for i in after}


def test_invalid_volume_type_is_refused_by_the_api_server(cluster, tmp_path):
    root, kubeconfig = cluster
    docs = [d for d in yaml.safe_load_all((PROJECT / "workload/k8s/phase4/mtls-app.yaml").read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    for vol in dep["spec"]["template"]["spec"]["volumes"]:
        if vol["name"] == "spire-agent-socket":
            vol["hostPath"]["type"] = "UnixSocket"           # not a HostPathType
    bad = tmp_path / "bad-mtls-app.yaml"
    bad.write_text(yaml.safe_dump(dep))
    rt = get_runtime(_target(kubeconfig, manifest_phase4=str(bad)))
    apps, _ = _apis(kubeconfig)
    if not apps.list_namespaced_deployment("default", field_selector="metadata.name=mtls-app").items:
        _phase3_deployment(kubeconfig)                               # run alone: no step 9 before
    had = apps.read_namespaced_deployment("mtls-app", "default")

    with pytest.raises(WorkloadError) as err:
        rt.deploy(4, AGENT_ID + "-other", timeout=60)
    text = str(err.value)
    assert "refused" in text and "hostPath.type" in text and "UnixSocket" in text, text
    # Validated before anything was deleted: the running Deployment is untouched.
    still = apps.read_namespaced_deployment("mtls-app", "default")
    assert still.metadata.uid == had.metadata.uid
