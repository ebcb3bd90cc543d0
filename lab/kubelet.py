"""A real kubelet for the lab (issue 6, tier 2): build it, and smoke-run it to find this VM's wall.

The kubelet is built in the same wrapper module as the control plane
(``~/.cache/spire-tpm-migration/k8s-<version>/kube``, staging replaces generated from the
downloaded go.mod by :func:`lab.kubernetes.staging_replaces`), with the same version ldflags,
but with cgo on, as upstream builds it (it is not in ``KUBE_STATIC_BINARIES``). A finished
build leaves a stamp next to the binary: the next call costs nothing.

The smoke run (``python -m lab.kubelet smoke --lab-root R``, R a root with a control plane from
``python -m lab up --kubernetes --root R``) keeps everything under ``/tmp/lab-kubelet``:

- a private containerd (Debian's 1.6.x; own root, state, socket; CRI ``restrict_oom_score_adj``
  because this VM lacks CAP_SYS_RESOURCE, cgroupfs, netns mounts under its state dir) with
  Debian's CNI plugins (``/usr/lib/cni``: a bridge ``labkub0`` without gateway or masquerade);
- a pause image (a static Go program) and the workload image (the rootfs of
  :mod:`lab.docker_engine`), written as OCI archives and imported with ``ctr`` (no registry);
- the kubelet (failCgroupV1 false, cgroupfs, failSwapOn false, serving on 127.0.0.1 only,
  node client cert from the lab's CA); then one pod on the real node, whose log is read back
  through the API server.

It stops every process it started by pid, removes its pods' containers, the bridge and the
empty cgroups it created, and writes back the kernel tunables the kubelet changed.

For tests, :func:`up` keeps such a node running under ``<lab root>/kubelet`` (kubelet also on its
read-only port, node labelled :data:`NODE_LABEL`) until :func:`down`; :func:`attest_pods` gives the
lab's agent SPIRE's ``k8s`` workload attestor and registers the workload with k8s selectors;
:func:`pod_runtime` is the suite's ``kubernetes`` runtime with the lab manifests
(``workload/k8s/lab/``). ``python -m lab up --kubelet`` does all three; ``python -m lab down`` undoes it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from .errors import LabError

from . import kubernetes as k8s

Log = Callable[[str], None]


def _go(args: list[str], cwd: Path, what: str) -> str:
    """Go, as the control plane builds it, but with cgo on (upstream builds the kubelet so)."""
    return k8s._go(args, cwd, what, cgo=True)


def kubelet_path() -> Path:
    return k8s.bin_dir() / "kubelet"


def _stamp() -> Path:
    return k8s.bin_dir() / ".kubelet.stamp"


def _stamp_key() -> str:
    return json.dumps({"name": "kubelet", "version": k8s.K8S_VERSION, "cgo": True,
                       "ldflags": k8s._ldflags()}, sort_keys=True)


def _built() -> bool:
    try:
        return os.access(kubelet_path(), os.X_OK) and _stamp().read_text() == _stamp_key()
    except OSError:
        return False


def build_kubelet(log: Log = print) -> Path:
    """Build (once) the kubelet v<K8S_VERSION> with cgo in the control plane's wrapper module."""
    k8s.bin_dir().mkdir(parents=True, exist_ok=True)
    with open(k8s.build_root() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _built():
            return kubelet_path()
        if shutil.which("gcc") is None and shutil.which("cc") is None:
            raise LabError("no C compiler", expected="gcc on PATH (the kubelet is built with cgo)",
                           found="neither gcc nor cc", remedy="apt-get install gcc")
        mod = k8s.build_root() / "kube"
        mod.mkdir(parents=True, exist_ok=True)
        what = f"kubelet {k8s.K8S_VERSION}"
        if not (mod / "go.mod").exists():
            _go(["mod", "init", "lab.local/kube-build"], mod, what)
        info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@v{k8s.K8S_VERSION}"],
                              mod, what))
        replaces = k8s.staging_replaces(Path(info["GoMod"]).read_text())
        if not replaces:
            raise LabError(f"no staging replaces found in k8s.io/kubernetes@v{k8s.K8S_VERSION}'s go.mod",
                           expected="replace lines => ./staging/src/k8s.io/...", found=info["GoMod"])
        _go(["mod", "edit", *[f"-replace={m}={r}" for m, r in sorted(replaces.items())]], mod, what)
        pkg = "k8s.io/kubernetes/cmd/kubelet"
        t0 = time.monotonic()
        log(f"building kubelet v{k8s.K8S_VERSION} (cgo) ...")
        _go(["get", f"{pkg}@v{k8s.K8S_VERSION}"], mod, what)
        _go(["build", "-ldflags", k8s._ldflags(), "-o", str(kubelet_path()), pkg], mod, what)
        _stamp().write_text(_stamp_key())
        log(f"built kubelet in {time.monotonic() - t0:.0f}s")
        return kubelet_path()


# --------------------------------------------------------------------------- smoke run

#: Where the smoke run keeps its config, certs, kubelet root dir, log and pid file.
SMOKE_ROOT = Path("/tmp/lab-kubelet")
#: Kernel tunables the kubelet sets at start (pkg/kubelet/cm/container_manager_linux.go).
KERNEL_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def node_identity(pki: Path, node: str, out: Path) -> tuple[Path, Path]:
    """A node client cert (CN=system:node:<node>, O=system:nodes) signed by the lab's Kubernetes CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = k8s._key()
    cert = k8s._cert(f"system:node:{node}", key, ca=ca, ca_key=ca_key, orgs=("system:nodes",), client=True)
    out.mkdir(parents=True, exist_ok=True)
    k8s._write(out / "node.key", k8s._pem_key(key))
    k8s._write(out / "node.crt", k8s._pem_cert(cert), 0o644)
    return out / "node.crt", out / "node.key"


def kubelet_config(root: Path, pki: Path, runtime_endpoint: str, port: int, healthz_port: int,
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
                              "x509": {"clientCAFile": str(pki / "ca.crt")}},
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


def smoke(lab_root: Path, runtime_endpoint: str, *, root: Path = SMOKE_ROOT, node: str | None = None,
          timeout: float = 90.0, keep: bool = False, overrides: dict | None = None,
          node_labels: dict[str, str] | None = None, log: Log = print) -> str:
    """Start the kubelet against the lab's control plane until its node is Ready; return the node name.

    *lab_root* is a root whose control plane is up (``python -m lab up --kubernetes --root ...``);
    *runtime_endpoint* a CRI socket (``unix:///...``). Everything else stays under *root*.
    Raises LabError with the kubelet's own error text if it exits or the node is not Ready in time.
    The kubelet is stopped at the end (by pid) unless *keep*; see :func:`stop`.

    The node is named after the host (``vm`` here, which /etc/hosts maps to 127.0.0.1): the API
    server reaches the kubelet (logs, exec) through the node's Hostname address, and the kubelet
    serves on 127.0.0.1 only.
    """
    import socket as _socket

    from spire_migration import process

    exe = build_kubelet(log)
    node = node or _socket.gethostname()
    pki = k8s.kube_root(lab_root) / "pki"
    kubeconfig = k8s.kubeconfig_path(lab_root)
    if not kubeconfig.exists():
        raise LabError("no control plane under the lab root", expected=str(kubeconfig), found="missing",
                       remedy=f"python -m lab up --kubernetes --root {lab_root}")
    root.mkdir(parents=True, exist_ok=True)
    crt, key = node_identity(pki, node, root / "pki")
    server = k8s._load_state(k8s.kube_root(lab_root))["apiserver"]
    (root / "kubelet.kubeconfig").write_text(
        k8s._kubeconfig(f"https://127.0.0.1:{server}", pki, "node")
        .replace(str(pki / "node.crt"), str(crt)).replace(str(pki / "node.key"), str(key)))
    healthz = _free_port()
    (root / "kubelet-config.yaml").write_text(
        kubelet_config(root, pki, runtime_endpoint, _free_port(), healthz, overrides))
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
    deadline = time.monotonic() + timeout
    ok = False
    try:
        while time.monotonic() < deadline:
            if process.proc_info(info.pid) is None:
                raise LabError("the kubelet exited during start", expected=f"node {node} Ready",
                               found=_kubelet_errors(log_file), remedy=f"read {log_file}")
            try:
                ready = _node_ready(kubeconfig, node, since=started)
            except Exception:  # noqa: BLE001 - not registered yet
                ready = False
            if ready:
                ok = True
                log(f"node {node} Ready after {timeout - (deadline - time.monotonic()):.0f}s")
                return node
            time.sleep(1.0)
        raise LabError(f"node {node} was not Ready within {timeout:g}s", expected=f"node {node} Ready",
                       found=_kubelet_errors(log_file), remedy=f"read {log_file}")
    finally:
        if not (ok and keep):
            stop(root)


def _node_ready(kubeconfig: Path, node: str, since=None) -> bool:
    """Ready, as reported by a kubelet heartbeat after *since* (a Node left by an earlier run
    keeps its old Ready condition until the node lifecycle controller marks it Unknown)."""
    n = k8s._api(kubeconfig).read_node(node, _request_timeout=5)
    return any(c.type == "Ready" and c.status == "True"
               and (since is None or (c.last_heartbeat_time and c.last_heartbeat_time >= since))
               for c in (n.status.conditions or []))


def stop(root: Path = SMOKE_ROOT, timeout: float = 30.0) -> None:
    """Stop the smoke kubelet by its pid file (idempotent)."""
    from spire_migration import process

    info = process.find(str(kubelet_path()), root / "kubelet.pid")
    if info is not None:
        process.stop(info, timeout=timeout, pid_file=root / "kubelet.pid")


# --------------------------------------------------------------------------- containerd (CRI)

#: The CNI bridge the smoke run creates (deleted by :func:`teardown`).
BRIDGE = "labkub0"
POD_SUBNET = "10.245.0.0/24"
PAUSE_IMAGE = "localhost/pause:local"
#: How the kubelet names the workload image (``spire-migration/mtls-app:lab`` normalised).
APP_IMAGE = "docker.io/spire-migration/mtls-app:lab"


def containerd_socket(root: Path = SMOKE_ROOT) -> Path:
    return root / "containerd" / "containerd.sock"


def containerd_config(root: Path) -> str:
    c = root / "containerd"
    return f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"

[grpc]
  address = "{containerd_socket(root)}"

[ttrpc]
  address = "{containerd_socket(root)}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{c / 'opt'}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{root / 'cni' / 'net.d'}"
"""


def _cni_conflist(root: Path) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": "lab-kubelet", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                  "dataDir": str(root / "cni" / "ipam")}}]}, indent=1) + "\n"


def _ctr(root: Path, *args: str, input: bytes | None = None, timeout: float = 120.0) -> str:
    proc = subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", *args],
                          input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"ctr {' '.join(args[:2])} failed", expected="exit 0",
                       found=proc.stderr.decode(errors="replace").strip())
    return proc.stdout.decode(errors="replace")


def containerd_up(root: Path = SMOKE_ROOT, timeout: float = 30.0) -> str:
    """Start (or reuse) the private containerd under *root*; return its CRI endpoint."""
    from spire_migration import process

    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed", expected=f"{tool} on PATH", found="missing",
                           remedy="apt-get install containerd runc containernetworking-plugins")
    if not Path("/usr/lib/cni/bridge").exists():
        raise LabError("CNI plugins are not installed", expected="/usr/lib/cni/bridge", found="missing",
                       remedy="apt-get install containernetworking-plugins")
    c = root / "containerd"
    (root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    (c / "config.toml").write_text(containerd_config(root))
    (root / "cni" / "net.d" / "10-lab.conflist").write_text(_cni_conflist(root))
    endpoint = f"unix://{containerd_socket(root)}"
    if process.find("containerd", c / "containerd.pid") is not None:
        return endpoint
    info = process.start(["containerd", "--config", str(c / "config.toml")], log=c / "containerd.log",
                         pid_file=c / "containerd.pid")
    deadline = time.monotonic() + timeout
    while True:
        if process.proc_info(info.pid) is None:
            raise LabError("containerd exited during start", expected="containerd running",
                           found=k8s._log_tail(c / "containerd.log"), remedy=f"read {c / 'containerd.log'}")
        try:
            _ctr(root, "version", timeout=5)
            return endpoint
        except (LabError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise LabError("containerd did not answer in time", expected=f"ctr version within {timeout}s",
                               found=k8s._log_tail(c / "containerd.log")) from None
            time.sleep(0.2)


_PAUSE_GO = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tc := make(chan os.Signal, 1)
\tsignal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
\t<-c
}
"""


def _oci_archive(layer: bytes, ref: str, config: dict) -> bytes:
    """A single-layer OCI image layout as a tar (what ``ctr images import`` reads)."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        def blob(data: bytes) -> dict:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            add("blobs/sha256/" + digest[7:], data)
            return {"digest": digest, "size": len(data)}

        layer_d = blob(layer)
        cfg = {"architecture": "amd64", "os": "linux", "config": config, "created": "1970-01-01T00:00:00Z",
               "rootfs": {"type": "layers", "diff_ids": [layer_d["digest"]]}}
        cfg_d = blob(json.dumps(cfg).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg_d},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_d}]}
        man_d = blob(json.dumps(manifest).encode())
        index = {"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **man_d,
            "annotations": {"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}}]}
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps(index).encode())
    return buf.getvalue()


def import_images(root: Path = SMOKE_ROOT) -> list[str]:
    """Build the pause and workload images and import them into the private containerd."""
    import io
    import sys
    import tarfile

    from . import docker_engine

    pdir = root / "pause"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "main.go").write_text(_PAUSE_GO)
    (pdir / "go.mod").write_text("module lab.local/pause\n\ngo 1.26\n")
    env = k8s._go_env(cgo=False)
    r = subprocess.run(["go", "build", "-ldflags", "-s -w", "-o", "pause", "."], cwd=pdir, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError("cannot build the pause binary", expected="exit 0", found=r.stderr.strip())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(pdir / "pause"), arcname="pause")
    _ctr(root, "images", "import", "-", input=_oci_archive(buf.getvalue(), PAUSE_IMAGE,
                                                          {"Entrypoint": ["/pause"]}))
    python = os.path.join(os.path.realpath(sys.base_prefix), "bin", "python3")
    cfg = {"Labels": {docker_engine.HASH_LABEL: docker_engine.app_hash()},
           "Env": [f"PATH={os.path.dirname(python)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"],
           "Entrypoint": [python, docker_engine.APP_IN_IMAGE], "Cmd": ["check"]}
    _ctr(root, "images", "import", "-",
         input=_oci_archive(docker_engine._rootfs_tar(docker_engine.APP_FILE), APP_IMAGE, cfg))
    return [PAUSE_IMAGE, APP_IMAGE]


# --------------------------------------------------------------------------- a pod on the node

def pod_smoke(lab_root: Path, node: str, timeout: float = 120.0) -> str:
    """Run one pod of the workload image on *node* (host Python bind-mounted read-only, as with
    docker); return its log as read through the API server. The pod is deleted afterwards."""
    import sys

    from kubernetes.client.exceptions import ApiException

    core = k8s._api(k8s.kubeconfig_path(lab_root))
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

    def delete() -> None:
        try:
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                core.read_namespaced_pod(name, "default")
            except ApiException as exc:
                if exc.status == 404:
                    return
            time.sleep(0.5)

    delete()
    sa_deadline = time.monotonic() + 30
    while True:  # a fresh control plane: the service account controller may not have made "default" yet
        try:
            uid = core.create_namespaced_pod("default", pod).metadata.uid
            break
        except ApiException as exc:
            if not (exc.status == 403 and "serviceaccount" in (exc.body or "")
                    and time.monotonic() < sa_deadline):
                raise
            time.sleep(0.5)
    try:
        deadline = time.monotonic() + timeout
        phase = None
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod(name, "default").status.phase
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(1.0)
        text = core.read_namespaced_pod_log(name, "default") if phase in ("Succeeded", "Failed") else ""
        if phase != "Succeeded" or marker not in text:
            events = core.list_namespaced_event("default", field_selector=f"involvedObject.uid={uid}")
            found = "\n".join(f"{e.reason}: {e.message}" for e in events.items[-15:])
            raise LabError(f"pod {name} did not run on node {node}", expected=f"phase Succeeded, log {marker!r}",
                           found=f"phase {phase}; log {text!r}\n{found}",
                           remedy=f"read {SMOKE_ROOT / 'kubelet.log'} and the containerd log")
        return text
    finally:
        delete()


# --------------------------------------------------------------------------- teardown

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
    from spire_migration import process

    stop(root)
    c = root / "containerd"
    if process.find("containerd", c / "containerd.pid") is not None:
        try:  # pods keep running when the kubelet stops: kill their tasks, remove their containers
            for line in _ctr(root, "tasks", "ls", "-q").split():
                subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", "tasks", "kill",
                                "-s", "SIGKILL", line], capture_output=True, timeout=30)
                subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", "tasks", "delete",
                                "-f", line], capture_output=True, timeout=30)
            for line in _ctr(root, "containers", "ls", "-q").split():
                subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", "containers", "rm",
                                line], capture_output=True, timeout=30)
        except (LabError, subprocess.TimeoutExpired) as exc:
            log(f"containerd cleanup: {exc}")
        info = process.find("containerd", c / "containerd.pid")
        if info is not None:
            process.stop(info, timeout=30.0, pid_file=c / "containerd.pid")
    from .docker_engine import _mounts_under

    for mnt in _mounts_under(root):
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    links = Path("/var/log/containers")  # hard-coded in the kubelet; it links into podLogsDir
    for link in links.glob("*.log") if links.is_dir() else []:
        try:
            if link.is_symlink() and os.readlink(link).startswith(str(root / "pod-logs") + "/"):
                link.unlink()
        except OSError:
            pass
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    for d in _cgroup_dirs_to_remove():
        try:
            d.rmdir()
        except OSError:
            pass
    if saved_tunables:
        restored = restore_tunables(saved_tunables)
        if restored:
            log(f"restored kernel tunables the kubelet changed: {', '.join(restored)}")


# --------------------------------------------------------------------------- a node kept up for a test

#: Label the kubelet puts on its node (``--node-labels``): the lab manifests' nodeSelector,
#: so that pods land on the real node, never on the kwok one.
NODE_LABEL = "lab.spire-migration.io/kubelet"


def node_root(lab_root: Path) -> Path:
    """Where :func:`up` keeps the node of *lab_root*: containerd, kubelet, pod logs, saved tunables."""
    return Path(lab_root).resolve() / "kubelet"


def node_state(lab_root: Path) -> dict:
    try:
        return json.loads((node_root(lab_root) / "node.json").read_text())
    except (OSError, ValueError):
        return {}


def up(lab_root: Path, *, timeout: float = 90.0, log: Log = print) -> dict:
    """Bring up (and keep) a real node for *lab_root*'s control plane: containerd, images, kubelet.

    The kubelet also serves its read-only port on 127.0.0.1 (for SPIRE's ``k8s`` workload
    attestor, which reads ``/pods`` there). Returns ``{"node", "read_only_port", "runtime_endpoint",
    "root"}``, also written to ``<root>/node.json``. The kernel tunables are saved before the
    kubelet starts (once: a second ``up`` keeps the first saving) and written back by :func:`down`.
    Anything half started is torn down when ``up`` fails.
    """
    from spire_migration import process

    root = node_root(lab_root)
    state = node_state(lab_root)
    if state and process.find(str(kubelet_path()), root / "kubelet.pid") is not None:
        return state
    root.mkdir(parents=True, exist_ok=True)
    saved = root / "tunables.before.json"
    if not saved.exists():
        saved.write_text(json.dumps(read_tunables()))
    ok = False
    try:
        t0 = time.monotonic()
        endpoint = containerd_up(root)
        log(f"containerd up: {endpoint}")
        log(f"imported {', '.join(import_images(root))}")
        port = _free_port()
        node = smoke(lab_root, endpoint, root=root, keep=True, timeout=timeout,
                     overrides={"readOnlyPort": port}, node_labels={NODE_LABEL: "true"}, log=log)
        state = {"node": node, "read_only_port": port, "runtime_endpoint": endpoint, "root": str(root)}
        (root / "node.json").write_text(json.dumps(state, indent=1) + "\n")
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
    if node and k8s.kubeconfig_path(lab_root).exists():
        try:
            k8s._api(k8s.kubeconfig_path(lab_root)).delete_node(node, _request_timeout=5)
        except Exception:  # noqa: BLE001 - the control plane may be down already
            pass


def k8s_attestor_block(read_only_port: int) -> str:
    """SPIRE's ``k8s`` workload attestor, reading the lab kubelet's read-only port on 127.0.0.1."""
    return f"""    # Pods on the lab's real kubelet node: pod selectors from the kubelet's /pods
    # (read-only port, 127.0.0.1 only). Added by lab/kubelet.py. The legacy container
    # locator finds containers only under a pod's cgroup (kubepods/.../pod<uid>/<id>): the
    # new one also takes the lab's docker containers (/docker/<id>, not pods of this kubelet)
    # for pods, polls the kubelet for them and fails their attestation after 30 s.
    WorkloadAttestor "k8s" {{
        plugin_data {{
            kubelet_read_only_port = {read_only_port}
            use_new_container_locator = false
        }}
    }}

"""


def add_k8s_attestor(agent_conf: Path, read_only_port: int) -> bool:
    """Add (or re-point) the ``k8s`` workload attestor in *agent_conf*, next to the docker one.

    Returns True when the file changed (the agent must be restarted to load it).
    """
    import re

    text = agent_conf.read_text()
    block = re.compile(r'(?:    #[^\n]*\n)*    WorkloadAttestor "k8s" \{\n.*?\n    \}\n\n?', re.S)
    if block.search(text):
        new = block.sub(lambda _m: k8s_attestor_block(read_only_port), text, count=1)
    else:
        at = text.find('    # Workloads are identified by the labels')
        if at < 0:
            at = text.find('    WorkloadAttestor "docker"')
        if at < 0:
            raise LabError("no docker WorkloadAttestor in the agent config", expected=str(agent_conf),
                           found="no 'WorkloadAttestor \"docker\"' block")
        new = text[:at] + k8s_attestor_block(read_only_port) + text[at:]
    if new == text:
        return False
    agent_conf.write_text(new)
    return True


#: The workload's ``k8s`` selectors: the guide's Deployment runs in namespace default, pods labelled
#: app=mtls-demo. Registered next to the docker-selected entry, under the same agent.
K8S_SELECTORS = ("k8s:ns:default", "k8s:pod-label:app:mtls-demo")
#: The lab variants of the guide's manifests (agent socket directory, no spire-agent binary or TPM
#: device, nodeSelector to the real node); relative to the project.
LAB_MANIFESTS = {3: Path("workload/k8s/lab/phase3/mtls-app.yaml"), 4: Path("workload/k8s/lab/phase4/mtls-app.yaml")}


def attest_pods(lab_root: Path, target, *, log: Log = print) -> str:
    """Have *target*'s agent attest the pods of :func:`up`'s node: add the ``k8s`` workload attestor
    (restarting the agent when its config changed) and register the workload with
    :data:`K8S_SELECTORS` under the agent's ID (once). Returns the agent's SPIFFE ID."""
    from spire_migration import services

    state = node_state(lab_root)
    if not state:
        raise LabError("no kubelet node under the lab root", expected=str(node_root(lab_root) / "node.json"),
                       found="missing", remedy="lab.kubelet.up(lab_root) first")
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
        log(f"registered {target.workload.spiffe_id} ({', '.join(K8S_SELECTORS)}) under {agent_id}")
    return agent_id


def pod_runtime(lab_root: Path, target):
    """The suite's ``kubernetes`` runtime for the real node: the lab's cluster and manifests."""
    import dataclasses

    from spire_migration.runtimes import get_runtime

    workload = dataclasses.replace(target.workload, runtime="kubernetes", kubeconfig=k8s.kubeconfig_path(lab_root),
                                   manifest_phase3=LAB_MANIFESTS[3], manifest_phase4=LAB_MANIFESTS[4],
                                   selectors=list(K8S_SELECTORS))
    return get_runtime(dataclasses.replace(target, workload=workload))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lab.kubelet",
                                     description="Tier 2 smoke: a real kubelet node for the lab's control plane.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the kubelet; print its path")
    p_smoke = sub.add_parser("smoke", help="containerd + kubelet + one pod, then tear down")
    p_smoke.add_argument("--lab-root", type=Path, required=True,
                         help="root of a lab brought up with `python -m lab up --kubernetes --root ...`")
    p_smoke.add_argument("--root", type=Path, default=SMOKE_ROOT)
    p_smoke.add_argument("--keep", action="store_true", help="leave containerd and the kubelet running")
    p_down = sub.add_parser("down", help="stop what `smoke --keep` left running")
    p_down.add_argument("--root", type=Path, default=SMOKE_ROOT)
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.cmd == "build":
            print(build_kubelet(log))
        elif args.cmd == "down":
            teardown(args.root, log=log)
        else:
            saved = read_tunables()
            args.root.mkdir(parents=True, exist_ok=True)
            (args.root / "tunables.before.json").write_text(json.dumps(saved))
            ok = False
            try:
                endpoint = containerd_up(args.root)
                log(f"containerd up: {endpoint}")
                log(f"imported {', '.join(import_images(args.root))}")
                node = smoke(args.lab_root, endpoint, root=args.root, keep=True, log=log)
                print(pod_smoke(args.lab_root, node).strip(), flush=True)
                ok = True
            finally:
                if not (ok and args.keep):
                    teardown(args.root, saved, log=log)
    except LabError as exc:
        print(f"kubelet {args.cmd}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
