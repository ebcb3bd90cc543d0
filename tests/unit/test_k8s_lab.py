"""The Kubernetes lab's build bookkeeping and tier detection (lab/k8s/), without building anything."""

from __future__ import annotations

import json

from lab.k8s import gobuild, tier

GOMOD = """module k8s.io/kubernetes
go 1.26
require k8s.io/api v0.0.0
replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/x/y => github.com/x/y v1.2.3
)
replace k8s.io/kubelet => ./staging/src/k8s.io/kubelet
"""


def test_staging_replaces_come_from_the_go_mod_only() -> None:
    _, minor, patch = gobuild.K8S_VERSION.split(".")
    assert gobuild.staging_replaces(GOMOD) == {m: f"{m}@v0.{minor}.{patch}"
                                               for m in ("k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet")}


def test_binaries_built_before_the_move_to_lab_k8s_still_count(tmp_path, monkeypatch) -> None:
    """Stamps written by lab/kubernetes.py and lab/kubelet.py (same keys): no rebuild of a cached build."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bins = gobuild.bin_dir()
    bins.mkdir(parents=True)
    old = {"kube-apiserver": {"name": "kube-apiserver", "version": gobuild.K8S_VERSION, "ldflags": gobuild.ldflags()},
           "etcd": {"name": "etcd", "version": gobuild.ETCD_VERSION, "ldflags": ""},
           "kubelet": {"name": "kubelet", "version": gobuild.K8S_VERSION, "cgo": True, "ldflags": gobuild.ldflags()}}
    for name, key in old.items():
        (bins / name).write_text("#!/bin/sh\n")
        (bins / name).chmod(0o755)
        (bins / f".{name}.stamp").write_text(json.dumps(key, sort_keys=True))
        assert gobuild.built(name), name
    (bins / ".etcd.stamp").write_text(json.dumps({**old["etcd"], "version": "3.5.0"}, sort_keys=True))
    assert not gobuild.built("etcd") and not gobuild.built("kube-scheduler")


def test_tier_two_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv("SPIRE_LAB_KUBELET", "0")
    found = tier.detect()
    assert found.tier == 1 and found.line() == "Kubernetes lab: control plane + kwok node only (tier 1): SPIRE_LAB_KUBELET=0"
