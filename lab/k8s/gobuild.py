"""Kubernetes binaries built from Go modules, once, cached (versions pinned here only).

Everything is built under ``~/.cache/spire-tpm-migration/k8s-<version>/`` through small
wrapper modules, because ``k8s.io/kubernetes`` requires its staging modules at ``v0.0.0``
and replaces them with local paths, which ``go install pkg@version`` refuses. The wrapper
replaces each staging module with its published ``v0.<minor>.<patch>`` tag; the list is
generated from the downloaded go.mod of that exact version, never hand-copied. etcd's and
kwok's wrappers are plain requires. The kubelet is built in the control plane's wrapper
module with cgo on, as upstream builds it. A finished build leaves a stamp per binary: the
next call costs nothing. GOMODCACHE and GOCACHE stay at Go's defaults so every build on
the machine shares them; a lock file serialises builds into the same place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import LabError

from ..spire_build import cache_dir
from .files import write_file

#: One Kubernetes version for every component (kwok v0.8.0 targets 1.36).
K8S_VERSION = "1.36.3"
#: Kubernetes >= 1.35 needs etcd 3.6 (kubeadm pins 3.6.x); Debian's 3.4 is too old.
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"
#: Control-plane binaries built from k8s.io/kubernetes.
KUBE_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: kubectl's supported skew against the API server (minor versions).
KUBECTL_SKEW = 1
#: Stage files of the kwok module, in kwokctl's default order (node: fast + heartbeat with lease).
_KWOK_STAGE_FILES = ("kustomize/stage/node/fast/node-initialize.yaml",
                     "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                     "kustomize/stage/pod/fast/pod-ready.yaml",
                     "kustomize/stage/pod/fast/pod-complete.yaml",
                     "kustomize/stage/pod/fast/pod-delete.yaml")

Log = Callable[[str], None]


def build_root() -> Path:
    return cache_dir() / f"k8s-{K8S_VERSION}"


def bin_dir() -> Path:
    return build_root() / "bin"


def kubelet_path() -> Path:
    return bin_dir() / "kubelet"


def kwok_stages() -> Path:
    """kwok's default stages (what kwokctl feeds it), taken from the kwok module we built."""
    return bin_dir() / "kwok-stages.yaml"


def go_env(cgo: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOBIN"}
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "1" if cgo else "0",
                "GOFLAGS": "-buildvcs=false -trimpath", "GOWORK": "off"})
    return env


def go(args: list[str], cwd: Path, what: str, cgo: bool = False) -> str:
    """Run ``go ARGS`` in *cwd*; a LabError with the tail of Go's output when it fails."""
    if shutil.which("go") is None:
        raise LabError("Go is not installed", expected="go >= 1.26 on PATH", found="no go binary",
                       remedy="install Go 1.26")
    proc = subprocess.run(["go", *args], cwd=cwd, env=go_env(cgo), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise LabError(f"go {' '.join(args[:2])} failed while building {what}",
                       expected="exit 0", found=tail,
                       remedy="check that the Go module proxy is reachable and the versions "
                              "pinned in lab/k8s/gobuild.py are served")
    return proc.stdout


def ldflags() -> str:
    major, minor, _ = K8S_VERSION.split(".")
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [f"-X {pkg}.gitVersion=v{K8S_VERSION}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(parts)


def _stamp(name: str) -> Path:
    return bin_dir() / f".{name}.stamp"


def _stamp_key(name: str) -> str:
    version = {"etcd": ETCD_VERSION, "kwok": KWOK_VERSION}.get(name, K8S_VERSION)
    key: dict = {"name": name, "version": version, "ldflags": ldflags() if name.startswith("kube") else ""}
    if name == "kubelet":
        key["cgo"] = True
    return json.dumps(key, sort_keys=True)


def built(name: str) -> bool:
    """True when *name* was built at the pinned version (its stamp matches)."""
    if name == "kwok" and not kwok_stages().is_file():
        return False
    try:
        return os.access(bin_dir() / name, os.X_OK) and _stamp(name).read_text() == _stamp_key(name)
    except OSError:
        return False


def staging_replaces(gomod_text: str) -> dict[str, str]:
    """``module -> module@v0.<minor>.<patch>`` for every staging module in k8s.io/kubernetes' go.mod."""
    _, minor, patch = K8S_VERSION.split(".")
    out: dict[str, str] = {}
    for line in gomod_text.splitlines():
        line = line.strip().removeprefix("replace ").strip()
        if "=>" not in line:
            continue
        left, right = (s.strip() for s in line.split("=>", 1))
        if right.startswith("./staging/"):
            mod = left.split()[0]
            out[mod] = f"{mod}@v0.{minor}.{patch}"
    return out


def kubectl_needed() -> bool:
    """True when the machine's kubectl is missing or outside the supported skew."""
    exe = shutil.which("kubectl")
    if exe is None:
        return True
    try:
        out = subprocess.run([exe, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=30)
        minor = int("".join(c for c in json.loads(out.stdout)["clientVersion"]["minor"] if c.isdigit()))
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return True
    return abs(minor - int(K8S_VERSION.split(".")[1])) > KUBECTL_SKEW


def kubectl_path() -> str:
    """The kubectl to use with the lab: ours if we built one, else the machine's."""
    ours = bin_dir() / "kubectl"
    return str(ours) if os.access(ours, os.X_OK) else shutil.which("kubectl") or "kubectl"


def _build_kube(names: list[str], log: Log, cgo: bool = False) -> None:
    """Build *names* (commands of k8s.io/kubernetes) in the wrapper module with staging replaces."""
    mod = build_root() / "kube"
    mod.mkdir(parents=True, exist_ok=True)
    what = f"Kubernetes {K8S_VERSION}"
    if not (mod / "go.mod").exists():
        go(["mod", "init", "lab.local/kube-build"], mod, what)
    info = json.loads(go(["mod", "download", "-json", f"k8s.io/kubernetes@v{K8S_VERSION}"], mod, what))
    replaces = staging_replaces(Path(info["GoMod"]).read_text())
    if not replaces:
        raise LabError(f"no staging replaces found in k8s.io/kubernetes@v{K8S_VERSION}'s go.mod",
                       expected="replace lines => ./staging/src/k8s.io/...", found=info["GoMod"])
    go(["mod", "edit", *[f"-replace={m}={r}" for m, r in sorted(replaces.items())]], mod, what)
    pkgs = [f"k8s.io/kubernetes/cmd/{n}" for n in names]
    go(["get", *[f"{p}@v{K8S_VERSION}" for p in pkgs]], mod, what)
    for name in names:
        t0 = time.monotonic()
        log(f"building {name} v{K8S_VERSION}{' (cgo)' if cgo else ''} ...")
        go(["build", "-ldflags", ldflags(), "-o", str(bin_dir() / name), f"k8s.io/kubernetes/cmd/{name}"],
           mod, f"{name} {K8S_VERSION}", cgo=cgo)
        write_file(_stamp(name), _stamp_key(name))
        log(f"built {name} in {time.monotonic() - t0:.0f}s")


def _build_simple(name: str, module: str, version: str, pkg: str, log: Log) -> None:
    mod = build_root() / name
    mod.mkdir(parents=True, exist_ok=True)
    what = f"{name} {version}"
    if not (mod / "go.mod").exists():
        go(["mod", "init", f"lab.local/{name}-build"], mod, what)
    t0 = time.monotonic()
    log(f"building {name} v{version} ...")
    go(["get", f"{pkg}@v{version}"], mod, what)
    go(["build", "-ldflags", "-s -w", "-o", str(bin_dir() / name), pkg], mod, what)
    if name == "kwok":
        src = Path(json.loads(go(["list", "-m", "-json", module], mod, what))["Dir"])
        write_file(kwok_stages(), "\n---\n".join((src / f).read_text().strip() for f in _KWOK_STAGE_FILES) + "\n")
    write_file(_stamp(name), _stamp_key(name))
    log(f"built {name} in {time.monotonic() - t0:.0f}s")


@contextmanager
def _build_lock() -> Iterator[None]:
    """Two sessions on one machine never build into the same place at once."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    with open(build_root() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(log: Log = print) -> Path:
    """Build (once) etcd, the control plane, kwok and, if needed, kubectl; return the bin dir."""
    with _build_lock():
        if not built("etcd"):
            _build_simple("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, "go.etcd.io/etcd/server/v3", log)
        kube = [n for n in KUBE_CMDS if not built(n)]
        if kubectl_needed() and not built("kubectl"):
            kube.append("kubectl")
        if kube:
            log(f"building {', '.join(kube)} from k8s.io/kubernetes v{K8S_VERSION} "
                "(first time only: long on 2 cores)")
            _build_kube(kube, log)
        if not built("kwok"):
            _build_simple("kwok", "sigs.k8s.io/kwok", KWOK_VERSION, "sigs.k8s.io/kwok/cmd/kwok", log)
    return bin_dir()


def build_kubelet(log: Log = print) -> Path:
    """Build (once) the kubelet v<K8S_VERSION> with cgo in the control plane's wrapper module."""
    with _build_lock():
        if not built("kubelet"):
            if shutil.which("gcc") is None and shutil.which("cc") is None:
                raise LabError("no C compiler", expected="gcc on PATH (the kubelet is built with cgo)",
                               found="neither gcc nor cc", remedy="apt-get install gcc")
            _build_kube(["kubelet"], log, cgo=True)
    return kubelet_path()
