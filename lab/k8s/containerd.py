"""A private containerd for the lab's kubelet node, and the images it runs (no registry).

Debian's containerd 1.6.x with its own root, state and socket under the node's root; CRI with
``restrict_oom_score_adj`` (this VM lacks CAP_SYS_RESOURCE), cgroupfs, netns mounts under its
state dir, and Debian's CNI plugins (``/usr/lib/cni``: a bridge :data:`BRIDGE` without gateway
or masquerade). The pause image (a static Go program) and the workload image (the rootfs of
:mod:`lab.docker_engine`) are written as OCI archives and imported with ``ctr``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from spire_migration.node import process
from ..errors import LabError

from .. import docker_engine
from . import gobuild
from .files import write_file
from .procs import log_tail

#: The CNI bridge of the node (deleted by :func:`lab.k8s.kubelet.teardown`).
BRIDGE = "labkub0"
POD_SUBNET = "10.245.0.0/24"
PAUSE_IMAGE = "localhost/pause:local"
#: How the kubelet names the workload image (``spire-migration/mtls-app:lab`` normalised).
APP_IMAGE = "docker.io/spire-migration/mtls-app:lab"
#: What the node needs from the machine (``scripts/setup.sh --tests`` installs them).
TOOLS = ("containerd", "ctr", "runc")
CNI_BRIDGE = Path("/usr/lib/cni/bridge")


def missing_tools() -> list[str]:
    """The binaries a kubelet node needs that this machine lacks (empty: all there)."""
    out = [t for t in TOOLS if shutil.which(t) is None]
    return out + ([str(CNI_BRIDGE)] if not CNI_BRIDGE.exists() else [])


def containerd_socket(root: Path) -> Path:
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


def ctr(root: Path, *args: str, input: bytes | None = None, timeout: float = 120.0) -> str:
    """``ctr -n k8s.io ARGS`` against the containerd of *root*; a LabError when it fails."""
    proc = subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", *args],
                          input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"ctr {' '.join(args[:2])} failed", expected="exit 0",
                       found=proc.stderr.decode(errors="replace").strip())
    return proc.stdout.decode(errors="replace")


def containerd_up(root: Path, timeout: float = 30.0) -> str:
    """Start (or reuse) the private containerd under *root*; return its CRI endpoint."""
    missing = missing_tools()
    if missing:
        raise LabError(f"{', '.join(missing)} not installed", expected="containerd, ctr, runc, CNI plugins",
                       found=f"missing: {', '.join(missing)}",
                       remedy="apt-get install containerd runc containernetworking-plugins "
                              "(scripts/setup.sh --tests)")
    c = root / "containerd"
    write_file(c / "config.toml", containerd_config(root))
    write_file(root / "cni" / "net.d" / "10-lab.conflist", _cni_conflist(root))
    endpoint = f"unix://{containerd_socket(root)}"
    if process.find("containerd", c / "containerd.pid") is not None:
        return endpoint
    info = process.start(["containerd", "--config", str(c / "config.toml")], log=c / "containerd.log",
                         pid_file=c / "containerd.pid")
    deadline = time.monotonic() + timeout
    while True:
        if process.proc_info(info.pid) is None:
            raise LabError("containerd exited during start", expected="containerd running",
                           found=log_tail(c / "containerd.log"), remedy=f"read {c / 'containerd.log'}")
        try:
            ctr(root, "version", timeout=5)
            return endpoint
        except (LabError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise LabError("containerd did not answer in time", expected=f"ctr version within {timeout}s",
                               found=log_tail(c / "containerd.log")) from None
            time.sleep(0.2)


def containerd_down(root: Path, log=print) -> None:
    """Kill the pods' tasks, remove their containers (pods outlive the kubelet), stop containerd."""
    c = root / "containerd"
    if process.find("containerd", c / "containerd.pid") is None:
        return
    try:
        for task in ctr(root, "tasks", "ls", "-q").split():
            for args in (("tasks", "kill", "-s", "SIGKILL", task), ("tasks", "delete", "-f", task)):
                subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", *args],
                               capture_output=True, timeout=30)
        for container in ctr(root, "containers", "ls", "-q").split():
            subprocess.run(["ctr", "-a", str(containerd_socket(root)), "-n", "k8s.io", "containers", "rm",
                            container], capture_output=True, timeout=30)
    except (LabError, subprocess.TimeoutExpired) as exc:
        log(f"containerd cleanup: {exc}")
    info = process.find("containerd", c / "containerd.pid")
    if info is not None:
        process.stop(info, timeout=30.0, pid_file=c / "containerd.pid")


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


def import_images(root: Path) -> list[str]:
    """Build the pause and workload images and import them into the private containerd."""
    pdir = root / "pause"
    write_file(pdir / "main.go", _PAUSE_GO)
    write_file(pdir / "go.mod", "module lab.local/pause\n\ngo 1.26\n")
    r = subprocess.run(["go", "build", "-ldflags", "-s -w", "-o", "pause", "."], cwd=pdir,
                       env=gobuild.go_env(cgo=False), capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError("cannot build the pause binary", expected="exit 0", found=r.stderr.strip())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(pdir / "pause"), arcname="pause")
    ctr(root, "images", "import", "-", input=_oci_archive(buf.getvalue(), PAUSE_IMAGE, {"Entrypoint": ["/pause"]}))
    python = docker_engine.interpreter()
    cfg = {"Labels": {docker_engine.HASH_LABEL: docker_engine.app_hash()},
           "Env": [f"PATH={os.path.dirname(python)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"],
           "Entrypoint": [python, docker_engine.APP_IN_IMAGE], "Cmd": ["check"]}
    ctr(root, "images", "import", "-",
        input=_oci_archive(docker_engine.rootfs_tar(docker_engine.APP_FILE), APP_IMAGE, cfg))
    return [PAUSE_IMAGE, APP_IMAGE]
