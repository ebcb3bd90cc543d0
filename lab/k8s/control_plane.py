"""A real Kubernetes control plane for the lab (tier 1): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, and one kwok node.

What is real: the control plane, built from Go modules (:mod:`lab.k8s.gobuild`), with the
lab's own PKI (:mod:`lab.k8s.pki`). What is fake: the node. kwok registers a node and plays
the kubelet's part at the API level (pods get scheduled, then marked Running and Ready); no
container ever runs (:mod:`lab.k8s.kubelet` adds a real node).

Everything listens on 127.0.0.1 only, on free ports, with its state, logs and pid files under
``root/kubernetes/``: ``pki/ etcd-data/ *.log *.pid kubeconfig state.json``. Each component is
started by pid file and polled until ready with a deadline; :func:`down` stops each one by its
pid (idempotent).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from spire_migration.node import process
from ..errors import LabError

from ..ports import free_port, port_free
from . import gobuild, pki
from .files import write_file
from .procs import https_get, running, start, wait_ready

#: The fake node kwok registers.
NODE_NAME = "kwok-node-0"
#: Start order; down() stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
_PORT_KEYS = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")

Log = Callable[[str], None]


def kube_root(root: Path) -> Path:
    return Path(root) / "kubernetes"


def kubeconfig_path(root: Path) -> Path:
    return kube_root(root) / "kubeconfig"


def load_state(root: Path) -> dict:
    """The control plane's ports (``state.json``), {} when it was never brought up."""
    try:
        return json.loads((kube_root(root) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def api_server(root: Path) -> str:
    return f"https://127.0.0.1:{load_state(root)['apiserver']}"


def core_api(kubeconfig: Path):
    """The CoreV1 API of the cluster of *kubeconfig*."""
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _ports(kr: Path, state: dict) -> dict:
    """A running control plane keeps its ports. A stopped one gets its old ports back when they
    are free (etcd's data remembers its peer URL), fresh ones otherwise."""
    if state and all(running(kr, c) for c in COMPONENTS[:2]):
        return state
    for c in COMPONENTS:  # nothing half-up from an earlier run
        info = running(kr, c)
        if info:
            process.stop(info, pid_file=kr / f"{c}.pid")
    if all(isinstance(state.get(k), int) for k in _PORT_KEYS) and all(port_free(state[k]) for k in _PORT_KEYS):
        return state
    return {k: free_port() for k in _PORT_KEYS}


def _specs(kr: Path, bins: Path, state: dict, kubeconfig: Path) -> dict[str, tuple[list[str], Callable[[], bool]]]:
    keys = kr / "pki"
    server = f"https://127.0.0.1:{state['apiserver']}"
    etcd_url = f"http://127.0.0.1:{state['etcd_client']}"
    peer_url = f"http://127.0.0.1:{state['etcd_peer']}"

    def healthz(port: int) -> Callable[[], bool]:
        return lambda: https_get(f"https://127.0.0.1:{port}/healthz", None)[0] == 200

    return {
        "etcd": ([str(bins / "etcd"), "--name", "lab", "--data-dir", str(kr / "etcd-data"),
                  "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                  "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                  "--initial-cluster", f"lab={peer_url}", "--initial-cluster-state", "new",
                  "--unsafe-no-fsync", "--log-level", "warn"],
                 lambda: https_get(f"{etcd_url}/health", None)[0] == 200),
        "kube-apiserver": ([str(bins / "kube-apiserver"), "--etcd-servers", etcd_url,
                            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                            "--secure-port", str(state["apiserver"]), "--endpoint-reconciler-type", "none",
                            "--cert-dir", str(kr / "apiserver-certs"),
                            "--tls-cert-file", str(keys / "apiserver.crt"),
                            "--tls-private-key-file", str(keys / "apiserver.key"),
                            "--client-ca-file", str(keys / "ca.crt"),
                            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                            "--service-account-key-file", str(keys / "sa.pub"),
                            "--service-account-signing-key-file", str(keys / "sa.key"),
                            "--service-cluster-ip-range", pki.SERVICE_CIDR,
                            "--authorization-mode", "Node,RBAC",
                            "--allow-privileged=true", "--profiling=false", "--v=1"],
                           lambda: https_get(f"{server}/readyz", keys)[0] == 200),
        "kube-controller-manager": ([str(bins / "kube-controller-manager"),
                                     "--kubeconfig", str(kr / "controller-manager.kubeconfig"),
                                     "--bind-address", "127.0.0.1",
                                     "--secure-port", str(state["controller_manager"]),
                                     "--cert-dir", str(kr / "controller-manager-certs"),
                                     "--leader-elect=false", "--use-service-account-credentials=true",
                                     "--service-account-private-key-file", str(keys / "sa.key"),
                                     "--root-ca-file", str(keys / "ca.crt"),
                                     "--cluster-signing-cert-file", str(keys / "ca.crt"),
                                     "--cluster-signing-key-file", str(keys / "ca.key"),
                                     "--profiling=false", "--v=1"],
                                    healthz(state["controller_manager"])),
        "kube-scheduler": ([str(bins / "kube-scheduler"), "--kubeconfig", str(kr / "scheduler.kubeconfig"),
                            "--bind-address", "127.0.0.1", "--secure-port", str(state["scheduler"]),
                            "--cert-dir", str(kr / "scheduler-certs"),
                            "--leader-elect=false", "--profiling=false", "--v=1"],
                           healthz(state["scheduler"])),
        "kwok": ([str(bins / "kwok"), "--config", str(gobuild.kwok_stages()),
                  "--kubeconfig", str(kr / "kwok.kubeconfig"), "--manage-single-node", NODE_NAME,
                  "--node-ip", "10.0.0.1", "--cidr", "10.244.0.0/24", "--node-lease-duration-seconds", "40"],
                 lambda: _node_ready(kubeconfig)),
    }


def up(root: Path, log: Log = print, timeout: float = 120.0) -> Path:
    """Start (or reuse) etcd, the control plane and kwok under root/kubernetes; return the kubeconfig.

    Builds the binaries first when they are not cached (:func:`lab.k8s.gobuild.build`).
    """
    bins = gobuild.build(log)
    kr = kube_root(root)
    kr.mkdir(parents=True, exist_ok=True)
    pki.make_pki(kr / "pki")
    state = _ports(kr, load_state(root))
    write_file(kr / "state.json", json.dumps(state, indent=2) + "\n")
    server = f"https://127.0.0.1:{state['apiserver']}"
    for stem in pki.CLIENTS:
        write_file(kr / f"{stem}.kubeconfig", pki.client_kubeconfig(server, kr / "pki", stem))
    kubeconfig = kubeconfig_path(root)
    write_file(kubeconfig, pki.client_kubeconfig(server, kr / "pki", "admin"), 0o600)

    t_all = time.monotonic()
    specs = _specs(kr, bins, state, kubeconfig)
    for name in COMPONENTS:
        argv, ready = specs[name]
        info = running(kr, name)
        t0 = time.monotonic()
        if info is None:
            if name == "kwok":
                _ensure_node(kubeconfig)
            info = start(kr, name, argv)
        wait_ready(name, ready, kr / f"{name}.log", info.pid, timeout)
        log(f"{name} ready (pid {info.pid}, {time.monotonic() - t0:.1f}s)")
    log(f"Kubernetes v{gobuild.K8S_VERSION} control plane up in {time.monotonic() - t_all:.1f}s; "
        f"KUBECONFIG={kubeconfig}")
    return kubeconfig


def _ensure_node(kubeconfig: Path) -> None:
    """Register the fake node kwok manages (what kwokctl's `create node` does)."""
    from kubernetes.client.exceptions import ApiException

    alloc = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME,
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": alloc, "capacity": alloc}}
    try:
        core_api(kubeconfig).create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise LabError(f"cannot register node {NODE_NAME}", expected="HTTP 201 or 409",
                           found=f"HTTP {exc.status}: {exc.body}") from exc


def _node_ready(kubeconfig: Path) -> bool:
    node = core_api(kubeconfig).read_node(NODE_NAME, _request_timeout=5)
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def down(root: Path, log: Log = print) -> None:
    """Stop every component this lab started, by pid (reverse order); idempotent."""
    kr = kube_root(root)
    for name in reversed(COMPONENTS):
        info = running(kr, name)
        if info is None:
            (kr / f"{name}.pid").unlink(missing_ok=True)
            continue
        process.stop(info, timeout=20.0, pid_file=kr / f"{name}.pid")
        log(f"stopped {name} (pid {info.pid})")


def status(root: Path) -> list[str]:
    """One line per component: running with its pid and port, or stopped."""
    kr = kube_root(root)
    state = load_state(root)
    ports = {"etcd": state.get("etcd_client"), "kube-apiserver": state.get("apiserver"),
             "kube-controller-manager": state.get("controller_manager"),
             "kube-scheduler": state.get("scheduler"), "kwok": None}
    out = []
    for name in COMPONENTS:
        info = running(kr, name)
        where = f" 127.0.0.1:{ports[name]}" if ports[name] else ""
        out.append(f"{name}: running (pid {info.pid}){where}" if info else f"{name}: stopped")
    if kubeconfig_path(root).exists():
        out.append(f"kubeconfig: {kubeconfig_path(root)}")
    return out


def exec_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """*base* (default: os.environ) plus what `python -m lab exec` needs for this lab's cluster.

    KUBECONFIG when the cluster was brought up under *root*; our kubectl first on PATH when we
    built one (the machine's is outside the supported version skew).
    """
    env = dict(os.environ if base is None else base)
    if kubeconfig_path(root).exists():
        env["KUBECONFIG"] = str(kubeconfig_path(root))
    if os.access(gobuild.bin_dir() / "kubectl", os.X_OK):
        env["PATH"] = f"{gobuild.bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env
