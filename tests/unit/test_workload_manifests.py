"""The workload's Kubernetes manifests (guide section 5 and step 9) parse and say what the guide says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spire_migration.config.target import WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = {3: ROOT / "workload/k8s/phase3/mtls-app.yaml", 4: ROOT / "workload/k8s/phase4/mtls-app.yaml"}


def deployment(phase: int) -> dict:
    docs = [d for d in yaml.safe_load_all(MANIFESTS[phase].read_text()) if d is not None]
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    assert len(deps) == 1, f"one Deployment expected in {MANIFESTS[phase]}, found kinds {[d.get('kind') for d in docs]}"
    return deps[0]


@pytest.mark.parametrize("phase", [3, 4])
def test_deployment_matches_the_guide(phase: int) -> None:
    dep = deployment(phase)
    assert dep["apiVersion"] == "apps/v1"
    assert dep["metadata"]["name"] == "mtls-app"
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "mtls-demo"}
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "mtls-demo"
    assert template["metadata"]["labels"]["phase"] == str(phase)
    (container,) = template["spec"]["containers"]
    assert container["name"] == "mtls-app"  # the docker selector io.kubernetes.container.name:mtls-app
    assert container["imagePullPolicy"] == "Never"
    assert container["image"] == WorkloadSpec().image
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SPIFFE_ENDPOINT_SOCKET"] == "unix:///tmp/spire-agent/public/api.sock"
    assert "SPIRE_AGENT_ID" not in env  # not knowable before attestation: the runtime adds it


@pytest.mark.parametrize("phase", [3, 4])
def test_volumes_are_the_guides(phase: int) -> None:
    spec = deployment(phase)["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert volumes["spire-agent-socket"] == {"path": "/tmp/spire-agent/public/api.sock", "type": "Socket"}
    assert volumes["spire-agent-bin"] == {"path": "/opt/spire/bin/spire-agent", "type": "File"}
    # No TPM device in either phase: the guide's mount is optional, the app never opens it.
    assert set(volumes) == {"spire-agent-socket", "spire-agent-bin"}
    mounts = {m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts == set(volumes), "every volume is mounted, and only those"


LAB_MANIFESTS = {3: ROOT / "workload/k8s/lab/phase3/mtls-app.yaml", 4: ROOT / "workload/k8s/lab/phase4/mtls-app.yaml"}


@pytest.mark.parametrize("phase", [3, 4])
def test_lab_variant_runs_on_the_real_node_with_the_socket_directory(phase: int) -> None:
    """workload/k8s/lab/ (lab/kubelet.py's node): the guide's Deployment, with the agent socket's
    directory mounted and the real node selected; the runtime points the app at the socket in it."""
    from spire_migration.node.runtimes import get_runtime
    from spire_migration.config.target import Target

    guide, lab = deployment(phase), next(d for d in yaml.safe_load_all(LAB_MANIFESTS[phase].read_text()) if d)
    assert lab["metadata"] == guide["metadata"] and lab["spec"]["selector"] == guide["spec"]["selector"]
    assert lab["spec"]["template"]["metadata"] == guide["spec"]["template"]["metadata"]
    spec = lab["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"lab.spire-migration.io/kubelet": "true"}
    assert [v["name"] for v in spec["volumes"]] == ["spire-agent-socket"]
    assert spec["volumes"][0]["hostPath"]["type"] == "Directory"

    target = Target.from_dict({"workload": {"runtime": "kubernetes", "spiffe_id": "spiffe://example.org/w",
                                            "manifest_phase3": str(LAB_MANIFESTS[3]),
                                            "manifest_phase4": str(LAB_MANIFESTS[4]),
                                            "agent_socket": "/run/lab/agent/public/api.sock"}})
    dep = get_runtime(target).manifest(phase, "spiffe://example.org/spire/agent/tpm_devid/x")
    pod = dep["spec"]["template"]["spec"]
    assert pod["volumes"][0]["hostPath"] == {"path": "/run/lab/agent/public", "type": "Directory"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SPIFFE_ENDPOINT_SOCKET"] == "unix:///run/spire-agent/public/api.sock"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/run/spire-agent/public"

    # The guide's manifests keep the socket-file mount: the path is the socket itself.
    guide_target = Target.from_dict({"workload": {"runtime": "kubernetes", "spiffe_id": "spiffe://example.org/w",
                                                  "agent_socket": "/run/lab/agent/public/api.sock"}})
    gpod = get_runtime(guide_target).manifest(phase, None)["spec"]["template"]["spec"]
    vol = next(v for v in gpod["volumes"] if v["name"] == "spire-agent-socket")
    assert vol["hostPath"] == {"path": "/run/lab/agent/public/api.sock", "type": "Socket"}


@pytest.mark.parametrize("mount_tpm", [False, True])
def test_the_tpm_device_is_mounted_only_when_the_target_asks(mount_tpm: bool) -> None:
    """``[workload] mount_tpm`` (default false): the guide's optional /dev/tpmrm0 mount, opt-in,
    in both runtimes and only in Phase 4."""
    from spire_migration.node.runtimes import get_runtime
    from spire_migration.config.target import Target

    data = {"workload": {"spiffe_id": "spiffe://example.org/w", "mount_tpm": mount_tpm},
            "tpm": {"device": "/dev/tpmrm0"}}
    k8s = get_runtime(Target.from_dict({**data, "workload": {**data["workload"], "runtime": "kubernetes"}}))
    for phase in (3, 4):
        pod = k8s.manifest(phase, None)["spec"]["template"]["spec"]
        vols = {v["name"]: v["hostPath"] for v in pod["volumes"]}
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        wanted = mount_tpm and phase == 4
        assert ("tpm-device" in vols) is wanted and ("tpm-device" in mounts) is wanted
        if wanted:
            assert vols["tpm-device"] == {"path": "/dev/tpmrm0", "type": "CharDevice"}
            assert mounts["tpm-device"]["mountPath"] == "/dev/tpmrm0" and mounts["tpm-device"]["readOnly"]
    docker = get_runtime(Target.from_dict({**data, "workload": {**data["workload"], "runtime": "docker"}}))
    for phase in (3, 4):
        for cfg in docker._desired(phase, None, "sha256:x").values():
            assert ("devices" in cfg) is (mount_tpm and phase == 4)
            if "devices" in cfg:
                assert cfg["devices"] == ["/dev/tpmrm0:/dev/tpmrm0:rw"]
