"""Real pods on a real kubelet, attested by SPIRE before and after the migration (issue 6, tier 2).

The lab (swtpm, SPIRE 1.15.3, dockerd, Phase 3 join_token agent), the control plane of
lab/k8s/control_plane.py and a real node of lab/k8s/kubelet.py (kubelet v1.36.3 built from Go modules,
a private containerd, bridge CNI). The agent gets SPIRE's ``k8s`` workload attestor (the
kubelet's read-only port on 127.0.0.1) next to its docker one, and the workload is registered
with ``k8s:ns:default`` and ``k8s:pod-label:app:mtls-demo`` under the agent's ID. Then:

- Phase 3: the suite's ``kubernetes`` runtime deploys the lab's Phase 3 Deployment; its pod runs
  on the real node and logs ``Successfully fetched SVIDs`` and ``VERIFIED``;
- the suite migrates the node (``pytest -m migrate``): the agent attests by tpm_devid and every
  entry, the k8s-selected one included, is re-parented under its new ID;
- step 9 through the ``kubernetes`` runtime (``deploy(4, <tpm_devid agent ID>)``): the new pod
  logs ``Agent attestation: tpm_devid``, ``Successfully fetched SVIDs`` and ``VERIFIED``, and the
  agent's log shows it attested that pod's PID by its pod UID.

Runs wherever the machine allows a kubelet (``lab.k8s.tier.detect``: root, cgroups, writable
sysctls, containerd/runc/CNI from ``scripts/setup.sh --tests``); skipped with the reason
elsewhere, or with SPIRE_LAB_KUBELET=0. The kubelet changes kernel sysctls while it runs
(written back at the end, asserted) and needs the kubelet build (cgo; cached after the first run,
``scripts/test.sh`` builds it up front).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from lab.k8s import control_plane as k8s
from lab.k8s import kubelet, pods, tier
from spire_migration.node import services
from spire_migration.node.spire import id_str

_TIER = tier.detect()

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.skipif(_TIER.tier < 2, reason=_TIER.line()),
]


def _pod_lines(rt, inst, timeout: float = 60.0) -> dict[str, str]:
    return {text: rt.wait_for_log(inst, text, timeout=timeout)
            for text in ("Successfully fetched SVIDs", "VERIFIED")}


def test_real_pods_are_attested_and_verified_before_and_after_migration(make_lab):
    lab = make_lab()                          # core.down() by the fixture, after the finally below
    root = lab.root
    timings: dict[str, float] = {}
    saved = kubelet.read_tunables()
    t0 = time.monotonic()
    try:
        lab.up()
        timings["lab up"] = time.monotonic() - t0
        t = time.monotonic()
        k8s.up(root, log=lambda m: None)
        timings["control plane up"] = time.monotonic() - t
        t = time.monotonic()
        node = kubelet.up(root, log=print)
        timings["kubelet node up"] = time.monotonic() - t
        target = lab.target

        t = time.monotonic()
        said: list[str] = []
        phase3_agent = pods.attest_pods(root, target, log=lambda m: (said.append(m), print(m)))
        assert "/spire/agent/join_token/" in phase3_agent, phase3_agent
        leaked = any(phase3_agent.rsplit("/", 1)[1] in m for m in said)
        assert said and not leaked, "the join token (in the join_token agent ID) was printed"
        rt = pods.pod_runtime(root, target)
        before = rt.deploy(3, None, timeout=120)
        assert len(before) == 1 and before[0].phase == 3 and before[0].state == "Running", before
        pod = k8s.core_api(k8s.kubeconfig_path(root)).read_namespaced_pod(before[0].name, target.workload.namespace)
        assert pod.spec.node_name == node["node"] != k8s.NODE_NAME   # the real node, not kwok's
        lines3 = _pod_lines(rt, before[0])
        timings["phase 3 pod verified"] = time.monotonic() - t
        print("\n".join(f"phase 3 {before[0].name}: {ln}" for ln in lines3.values()))

        t = time.monotonic()
        run = lab.run_suite("-m", "migrate")
        timings["migrate"] = time.monotonic() - t
        assert run.code == 0, run.output[-4000:]
        agent_id = services.agent_identity(target)
        assert "/spire/agent/tpm_devid/" in agent_id, agent_id
        entries = services.server_cli(target).entries()
        k8s_entries = [e for e in entries
                       if sorted(f"{s['type']}:{s['value']}" for s in e["selectors"]) == sorted(pods.K8S_SELECTORS)]
        assert [id_str(e["parent_id"]) for e in k8s_entries] == [agent_id], k8s_entries
        assert phase3_agent not in {id_str(e["parent_id"]) for e in entries}

        t = time.monotonic()
        after = rt.deploy(4, agent_id, timeout=120)
        timings["step 9 deploy (phase 4)"] = time.monotonic() - t
        assert len(after) == 1 and after[0].phase == 4 and after[0].state == "Running", after
        assert after[0].id != before[0].id
        lines4 = _pod_lines(rt, after[0])
        att = rt.wait_for_log(after[0], "Agent attestation: tpm_devid", timeout=10)
        assert agent_id in att, att
        timings["phase 4 pod verified"] = time.monotonic() - t
        print(att)
        print("\n".join(f"phase 4 {after[0].name}: {ln}" for ln in lines4.values()))

        # The agent attested the new pod through the kubelet: k8s selectors with its pod UID.
        log_text = Path(target.agent.log).read_text(errors="replace")
        attested = [ln for ln in log_text.splitlines()
                    if "PID attested to have selectors" in ln and f"pod-uid:{after[0].id}" in ln]
        assert attested, "the agent's log has no k8s attestation of the phase 4 pod"
        assert re.search(r'value:\\?"pod-label:app:mtls-demo', attested[-1]), attested[-1][:600]
    finally:
        print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        kubelet.down(root, log=print)
        k8s.down(root, log=lambda m: None)
    assert kubelet.read_tunables() == saved, "kernel tunables not restored"
