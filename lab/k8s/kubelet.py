"""A real kubelet node for the lab (tier 2), against the control plane of :mod:`lab.k8s.control_plane`.

The kubelet (built with cgo by :func:`lab.k8s.gobuild.build_kubelet`) runs with failCgroupV1
false, cgroupfs, failSwapOn false, serving on 127.0.0.1 only, with a node client cert from the
lab's CA, on a private containerd (:mod:`lab.k8s.containerd`). :func:`up` keeps such a node under
``<lab root>/kubelet`` (kubelet also on its read-only port, node labelled :data:`NODE_LABEL`)
until :func:`down`, which stops every process it started by pid, removes its pods' containers,
the bridge and the empty cgroups it created, and writes back the kernel tunables the kubelet
changed. :func:`start` alone is the smoke run of ``python -m lab.k8s smoke``.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from spire_migration.node import process
from ..errors import LabError

from .. import docker_engine
from ..ports import free_port
from . import containerd, control_plane, gobuild, pki
from .files import write_file

#: Where the smoke run keeps its config, certs, kubelet root dir, log and pid file.
SMOKE_ROOT = Path("/tmp/lab-kubelet")
#: Kernel tunables the kubelet sets at start (pkg/kubelet/cm/container_manager_linux.go).
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
#: Label the kubelet puts on its node (``--node-labels``): the lab manifests' nodeSelector,
#: so that pods land on the real node, never on the kwok one.
NODE_LABEL = "lab.spire-migration.io/kubelet"

Log = Callable[[str], None]


def read_tunables() -> dict[str, str]:
    out = {}
    for t in KERNEL_TUNABLES:
        try:
            out[t] = Path("/proc/sys", t).read_text().strip()
        except OSError:
            pass
    return out


def restore_tunables(saved: dict[str, str]) -> list[str]:
    """Write back the kernel tunables the kubelet changed; return what was restored."""
    restored = []
    for t, v in saved.items():
        p = Path("/proc/sys", t)
        try:
            if p.read_text().strip() != v:
                p.write_text(v)
                restored.append(f"{t.replace('/', '.')}={v}")
        except OSError:
            pass
    return restored


def kubelet_config(root: Path, keys: Path, runtime_endpoint: str, port: int, healthz_port: int,
                   overrides: dict | None = None) -> str:
    """The KubeletConfiguration for this VM: cgroup v1 allowed, cgroupfs, swap tolerated, loopback only.

    The server accepts anonymous requests (AlwaysAllow) because the lab's kube-apiserver has no
    kubelet client certificate and must reach it for logs and exec; it listens on 127.0.0.1 only.
    """
    import yaml

    cfg = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
           "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
           "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
           "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
           "containerRuntimeEndpoint": runtime_endpoint, "podLogsDir": str(root / "pod-logs"),
           "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False},
                              "x509": {"clientCAFile": str(keys / "ca.crt")}},
           "authorization": {"mode": "AlwaysAllow"},
           # containerd 1.6.20 does not pin the sandbox image: keep image GC away from pause.
           "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
           "evictionHard": {"nodefs.available": "1%", "imagefs.available": "1%", "memory.available": "100Mi"},
           "serializeImagePulls": False}
    cfg.update(overrides or {})
    return yaml.safe_dump(cfg, sort_keys=False)


def _kubelet_errors(log: Path, lines: int = 25) -> str:
    """The kubelet's fatal/error lines (klog E/F) if any, else the log's tail."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errs = [ln for ln in text if ln[:1] in ("E", "F") and ln[1:5].isdigit()
            or "command failed" in ln or "Failed to run kubelet" in ln]
    return "\n".join((errs or text)[-lines:]) or "(empty log)"


def node_ready(kubeconfig: Path, node: str, since=None) -> bool:
    """Ready, as reported by a kubelet heartbeat after *since* (a Node left by an earlier run
    keeps its old Ready condition until the node lifecycle controller marks it Unknown)."""
    n = control_plane.core_api(kubeconfig).read_node(node, _request_timeout=5)
    return any(c.type == "Ready" and c.status == "True"
               and (since is None or (c.last_heartbeat_time and c.last_heartbeat_time >= since))
               for c in (n.status.conditions or []))


def start(lab_root: Path, runtime_endpoint: str, *, root: Path = SMOKE_ROOT, node: str | None = None,
          timeout: float = 90.0, keep: bool = False, overrides: dict | None = None,
          node_labels: dict[str, str] | None = None, log: Log = print) -> str:
    """Start the kubelet against the lab's control plane until its node is Ready; return the node name.

    *lab_root* is a root whose control plane is up; *runtime_endpoint* a CRI socket
    (``unix:///...``). Everything else stays under *root*. Raises LabError with the kubelet's own
    error text if it exits or the node is not Ready in time. The kubelet is stopped at the end
    (by pid) unless *keep*. The node is named after the host (which /etc/hosts maps to a loopback
    address): the API server reaches the kubelet (logs, exec) through the node's Hostname address.
    """
    exe = gobuild.build_kubelet(log)
    node = node or socket.gethostname()
    keys = control_plane.kube_root(lab_root) / "pki"
    kubeconfig = control_plane.kubeconfig_path(lab_root)
    if not kubeconfig.exists():
        raise LabError("no control plane under the lab root", expected=str(kubeconfig), found="missing",
                       remedy=f"python -m lab up --kubernetes --root {lab_root}")
    crt, key = pki.node_identity(keys, node, root / "pki")
    write_file(root / "kubelet.kubeconfig",
               pki.kubeconfig(control_plane.api_server(lab_root), keys / "ca.crt", crt, key, "node"))
    write_file(root / "kubelet-config.yaml",
               kubelet_config(root, keys, runtime_endpoint, free_port(), free_port(), overrides))
    argv = [str(exe), "--config", str(root / "kubelet-config.yaml"),
            "--kubeconfig", str(root / "kubelet.kubeconfig"),
            "--root-dir", str(root / "kubelet-root"), "--cert-dir", str(root / "kubelet-certs"),
            "--hostname-override", node, "--v=2"]
    if node_labels:
        argv.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(node_labels.items())))
    log_file = root / "kubelet.log"
    log_file.unlink(missing_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    info = process.start(argv, log=log_file, pid_file=root / "kubelet.pid")
    log(f"kubelet started (pid {info.pid}); log {log_file}")
    t0 = time.monotonic()
    deadline = t0 + timeout
    ok = False
    try:
        while time.monotonic() < deadline:
            if process.proc_info(info.pid) is None:
                raise LabError("the kubelet exited during start", expected=f"node {node} Ready",
                               found=_kubelet_errors(log_file), remedy=f"read {log_file}")
            try:
                ready = node_ready(kubeconfig, node, since=started)
            except Exception:  # noqa: BLE001 - not registered yet
                ready = False
            if ready:
                ok = True
                log(f"node {node} Ready after {time.monotonic() - t0:.0f}s")
                return node
            time.sleep(1.0)
        raise LabError(f"node {node} was not Ready within {timeout:g}s", expected=f"node {node} Ready",
                       found=_kubelet_errors(log_file), remedy=f"read {log_file}")
    finally:
        if not (ok and keep):
            stop(root)


def stop(root: Path = SMOKE_ROOT, timeout: float = 30.0) -> None:
    """Stop the kubelet of *root* by its pid file (idempotent)."""
    info = process.find(str(gobuild.kubelet_path()), root / "kubelet.pid")
    if info is not None:
        process.stop(info, timeout=timeout, pid_file=root / "kubelet.pid")


def _cgroup_dirs_to_remove() -> list[Path]:
    out = []
    base = Path("/sys/fs/cgroup")
    for hier in sorted(base.iterdir()) if base.is_dir() else []:
        for top in ("kubepods", "k8s.io"):
            d = hier / top
            if d.is_dir():
                out += sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                              reverse=True) + [d]
    return out


def teardown(root: Path = SMOKE_ROOT, saved_tunables: dict[str, str] | None = None, log: Log = print) -> None:
    """Stop the kubelet and containerd of *root* (by pid), with what they leave behind. Idempotent."""
    stop(root)
    containerd.containerd_down(root, log=log)
    for mnt in docker_engine.mounts_under(root):
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    links = Path("/var/log/containers")  # hard-coded in the kubelet; it links into podLogsDir
    for link in links.glob("*.log") if links.is_dir() else []:
        try:
            if link.is_symlink() and os.readlink(link).startswith(str(root / "pod-logs") + "/"):
                link.unlink()
        except OSError:
            pass
    if Path(f"/sys/class/net/{containerd.BRIDGE}").exists():
        subprocess.run(["ip", "link", "del", containerd.BRIDGE], capture_output=True)
    for d in _cgroup_dirs_to_remove():
        try:
            d.rmdir()
        except OSError:
            pass
    if saved_tunables:
        restored = restore_tunables(saved_tunables)
        if restored:
            log(f"restored kernel tunables the kubelet changed: {', '.join(restored)}")


def node_root(lab_root: Path) -> Path:
    """Where :func:`up` keeps the node of *lab_root*: containerd, kubelet, pod logs, saved tunables."""
    return Path(lab_root).resolve() / "kubelet"


def node_state(lab_root: Path) -> dict:
    try:
        return json.loads((node_root(lab_root) / "node.json").read_text())
    except (OSError, ValueError):
        return {}


def save_tunables(root: Path) -> dict[str, str]:
    """Save the kernel tunables before a kubelet starts (once: a second call keeps the first saving)."""
    saved = root / "tunables.before.json"
    if not saved.exists():
        write_file(saved, json.dumps(read_tunables()))
    return json.loads(saved.read_text())


def up(lab_root: Path, *, timeout: float = 90.0, log: Log = print) -> dict:
    """Bring up (and keep) a real node for *lab_root*'s control plane: containerd, images, kubelet.

    The kubelet also serves its read-only port on 127.0.0.1 (for SPIRE's ``k8s`` workload
    attestor, which reads ``/pods`` there). Returns ``{"node", "read_only_port", "runtime_endpoint",
    "root"}``, also written to ``<root>/node.json``. The kernel tunables are saved before the
    kubelet starts and written back by :func:`down`. Anything half started is torn down when
    ``up`` fails.
    """
    root = node_root(lab_root)
    state = node_state(lab_root)
    if state and process.find(str(gobuild.kubelet_path()), root / "kubelet.pid") is not None:
        return state
    save_tunables(root)
    ok = False
    try:
        t0 = time.monotonic()
        endpoint = containerd.containerd_up(root)
        log(f"containerd up: {endpoint}")
        log(f"imported {', '.join(containerd.import_images(root))}")
        port = free_port()
        node = start(lab_root, endpoint, root=root, keep=True, timeout=timeout,
                     overrides={"readOnlyPort": port}, node_labels={NODE_LABEL: "true"}, log=log)
        state = {"node": node, "read_only_port": port, "runtime_endpoint": endpoint, "root": str(root)}
        write_file(root / "node.json", json.dumps(state, indent=1) + "\n")
        log(f"kubelet node {node} up in {time.monotonic() - t0:.1f}s (read-only port 127.0.0.1:{port})")
        ok = True
        return state
    finally:
        if not ok:
            down(lab_root, log=log)


def down(lab_root: Path, *, log: Log = print) -> None:
    """Undo :func:`up`: pods' containers, kubelet, containerd, mounts, bridge, cgroups, tunables;
    the Node object is deleted when the API server still answers. Idempotent."""
    root = node_root(lab_root)
    if not root.exists():
        return
    saved_file = root / "tunables.before.json"
    try:
        saved = json.loads(saved_file.read_text())
    except (OSError, ValueError):
        saved = None
    node = node_state(lab_root).get("node")
    teardown(root, saved, log=log)
    saved_file.unlink(missing_ok=True)
    (root / "node.json").unlink(missing_ok=True)
    if node and control_plane.kubeconfig_path(lab_root).exists():
        try:
            control_plane.core_api(control_plane.kubeconfig_path(lab_root)).delete_node(node, _request_timeout=5)
        except Exception:  # noqa: BLE001 - the control plane may be down already
            pass
