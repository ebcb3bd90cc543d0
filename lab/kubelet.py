"""A real kubelet for the lab (issue 6, tier 2): build it, and smoke-run it to find this VM's wall.

The kubelet is built in the same wrapper module as the control plane
(``~/.cache/spire-tpm-migration/k8s-<version>/kube``, staging replaces generated from the
downloaded go.mod by :func:`lab.kubernetes.staging_replaces`), with the same version ldflags,
but with cgo on, as upstream builds it (it is not in ``KUBE_STATIC_BINARIES``). A finished
build leaves a stamp next to the binary: the next call costs nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from spire_migration.errors import LabError

from . import kubernetes as k8s

Log = Callable[[str], None]


def _go_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOBIN"}
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "1", "GOFLAGS": "-buildvcs=false -trimpath",
                "GOWORK": "off"})
    return env


def _go(args: list[str], cwd: Path, what: str) -> str:
    if shutil.which("go") is None:
        raise LabError("Go is not installed", expected="go >= 1.26 on PATH", found="no go binary",
                       remedy="install Go 1.26")
    proc = subprocess.run(["go", *args], cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise LabError(f"go {' '.join(args[:2])} failed while building {what}",
                       expected="exit 0", found=tail,
                       remedy="check that the Go module proxy is reachable and that gcc is installed "
                              "(the kubelet is built with cgo)")
    return proc.stdout


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


def kubelet_config(root: Path, pki: Path, runtime_endpoint: str, port: int, healthz_port: int) -> str:
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: {runtime_endpoint}
podLogsDir: {root / 'pod-logs'}
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: {pki / 'ca.crt'}
authorization:
  mode: AlwaysAllow
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  nodefs.available: "1%"
  imagefs.available: "1%"
  memory.available: "100Mi"
serializeImagePulls: false
"""


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
          timeout: float = 90.0, keep: bool = False, log: Log = print) -> str:
    """Start the kubelet against the lab's control plane until its node is Ready; return the node name.

    *lab_root* is a root whose control plane is up (``python -m lab up --kubernetes --root ...``);
    *runtime_endpoint* a CRI socket (``unix:///...``). Everything else stays under *root*.
    Raises LabError with the kubelet's own error text if it exits or the node is not Ready in time.
    The kubelet is stopped at the end (by pid) unless *keep*; see :func:`stop`.
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
        kubelet_config(root, pki, runtime_endpoint, _free_port(), healthz))
    argv = [str(exe), "--config", str(root / "kubelet-config.yaml"),
            "--kubeconfig", str(root / "kubelet.kubeconfig"),
            "--root-dir", str(root / "kubelet-root"), "--cert-dir", str(root / "kubelet-certs"),
            "--hostname-override", node, "--v=2"]
    log_file = root / "kubelet.log"
    log_file.unlink(missing_ok=True)
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
                ready = _node_ready(kubeconfig, node)
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


def _node_ready(kubeconfig: Path, node: str) -> bool:
    n = k8s._api(kubeconfig).read_node(node, _request_timeout=5)
    return any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))


def stop(root: Path = SMOKE_ROOT, timeout: float = 30.0) -> None:
    """Stop the smoke kubelet by its pid file (idempotent)."""
    from spire_migration import process

    info = process.find(str(kubelet_path()), root / "kubelet.pid")
    if info is not None:
        process.stop(info, timeout=timeout, pid_file=root / "kubelet.pid")
