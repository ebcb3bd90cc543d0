"""A real Kubernetes control plane for the lab, built from Go modules (issue 6, tier 1).

What is real: etcd, kube-apiserver, kube-controller-manager and kube-scheduler, all
built from their Go modules at one pinned version, with the lab's own PKI. What is
fake: the node. kwok registers a node and plays the kubelet's part at the API level
(pods get scheduled, then marked Running and Ready); no container ever runs.

Building (:func:`build`) goes through small wrapper modules under
``~/.cache/spire-tpm-migration/k8s-<version>/`` because ``k8s.io/kubernetes``
requires its staging modules at ``v0.0.0`` and replaces them with local paths, which
``go install pkg@version`` refuses. The wrapper replaces each staging module with
its published ``v0.<minor>.<patch>`` tag; the list is generated from the downloaded
go.mod of that exact version, never hand-copied. etcd's and kwok's wrappers are
plain requires. A finished build leaves a stamp per binary: the next call costs
nothing. GOMODCACHE and GOCACHE stay at Go's defaults so every build on the machine
(developers' and CI's) shares them.

Running (:func:`up`): everything listens on 127.0.0.1 only, on free ports, with its
state, logs and pid files under ``root/kubernetes/``::

    pki/  etcd-data/  *.log  *.pid  kubeconfig  state.json

Each component is started by pid file and polled until ready with a deadline.
:func:`down` stops each one by its pid (idempotent).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import LabError

from .spire_build import cache_dir

#: One Kubernetes version for every component (kwok v0.8.0 targets 1.36).
K8S_VERSION = "1.36.3"
#: Kubernetes >= 1.35 needs etcd 3.6 (kubeadm pins 3.6.x); Debian's 3.4 is too old.
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"

#: Control-plane binaries built from k8s.io/kubernetes.
KUBE_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: The fake node kwok registers.
NODE_NAME = "kwok-node-0"
#: kubectl's supported skew against the API server (minor versions).
KUBECTL_SKEW = 1

Log = Callable[[str], None]


# --------------------------------------------------------------------------- build

def build_root() -> Path:
    return cache_dir() / f"k8s-{K8S_VERSION}"


def bin_dir() -> Path:
    return build_root() / "bin"


def _go_env(cgo: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOBIN"}
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "1" if cgo else "0",
                "GOFLAGS": "-buildvcs=false -trimpath", "GOWORK": "off"})
    return env


def _go(args: list[str], cwd: Path, what: str, cgo: bool = False) -> str:
    if shutil.which("go") is None:
        raise LabError("Go is not installed", expected="go >= 1.26 on PATH", found="no go binary",
                       remedy="install Go 1.26")
    proc = subprocess.run(["go", *args], cwd=cwd, env=_go_env(cgo), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise LabError(f"go {' '.join(args[:2])} failed while building {what}",
                       expected="exit 0", found=tail,
                       remedy="check that the Go module proxy is reachable and the versions "
                              "pinned at the top of lab/kubernetes.py are served")
    return proc.stdout


def _ldflags() -> str:
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
    return json.dumps({"name": name, "version": version,
                       "ldflags": _ldflags() if name.startswith("kube") else ""}, sort_keys=True)


def _built(name: str) -> bool:
    exe = bin_dir() / name
    if name == "kwok" and not kwok_stages().is_file():
        return False
    try:
        return os.access(exe, os.X_OK) and _stamp(name).read_text() == _stamp_key(name)
    except OSError:
        return False


def kwok_stages() -> Path:
    """kwok's default stages (what kwokctl feeds it), taken from the kwok module we built."""
    return bin_dir() / "kwok-stages.yaml"


#: Stage files of the kwok module, in kwokctl's default order (node: fast + heartbeat with lease).
_KWOK_STAGE_FILES = ("kustomize/stage/node/fast/node-initialize.yaml",
                     "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                     "kustomize/stage/pod/fast/pod-ready.yaml",
                     "kustomize/stage/pod/fast/pod-complete.yaml",
                     "kustomize/stage/pod/fast/pod-delete.yaml")


def staging_replaces(gomod_text: str) -> dict[str, str]:
    """``module -> module@v0.<minor>.<patch>`` for every staging module in k8s.io/kubernetes' go.mod."""
    _, minor, patch = K8S_VERSION.split(".")
    out: dict[str, str] = {}
    for line in gomod_text.splitlines():
        line = line.strip()
        if line.startswith("replace "):
            line = line[len("replace "):].strip()
        if "=>" not in line:
            continue
        left, right = (s.strip() for s in line.split("=>", 1))
        mod = left.split()[0]
        if right.startswith("./staging/"):
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
    if os.access(ours, os.X_OK):
        return str(ours)
    return shutil.which("kubectl") or "kubectl"


def _build_kube(names: list[str], log: Log) -> None:
    mod = build_root() / "kube"
    mod.mkdir(parents=True, exist_ok=True)
    what = f"Kubernetes {K8S_VERSION}"
    if not (mod / "go.mod").exists():
        _go(["mod", "init", "lab.local/kube-build"], mod, what)
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@v{K8S_VERSION}"], mod, what))
    replaces = staging_replaces(Path(info["GoMod"]).read_text())
    if not replaces:
        raise LabError(f"no staging replaces found in k8s.io/kubernetes@v{K8S_VERSION}'s go.mod",
                       expected="replace lines => ./staging/src/k8s.io/...", found=info["GoMod"])
    _go(["mod", "edit", *[f"-replace={m}={r}" for m, r in sorted(replaces.items())]], mod, what)
    pkgs = [f"k8s.io/kubernetes/cmd/{n}" for n in names]
    _go(["get", *[f"{p}@v{K8S_VERSION}" for p in pkgs]], mod, what)
    for name in names:
        t0 = time.monotonic()
        log(f"building {name} v{K8S_VERSION} ...")
        _go(["build", "-ldflags", _ldflags(), "-o", str(bin_dir() / name),
             f"k8s.io/kubernetes/cmd/{name}"], mod, f"{name} {K8S_VERSION}")
        _stamp(name).write_text(_stamp_key(name))
        log(f"built {name} in {time.monotonic() - t0:.0f}s")


def _build_simple(name: str, module: str, version: str, pkg: str, log: Log) -> None:
    mod = build_root() / name
    mod.mkdir(parents=True, exist_ok=True)
    what = f"{name} {version}"
    if not (mod / "go.mod").exists():
        _go(["mod", "init", f"lab.local/{name}-build"], mod, what)
    t0 = time.monotonic()
    log(f"building {name} v{version} ...")
    _go(["get", f"{pkg}@v{version}"], mod, what)
    _go(["build", "-ldflags", "-s -w", "-o", str(bin_dir() / name), pkg], mod, what)
    if name == "kwok":
        src = Path(json.loads(_go(["list", "-m", "-json", module], mod, what))["Dir"])
        docs = [(src / f).read_text().strip() for f in _KWOK_STAGE_FILES]
        kwok_stages().write_text("\n---\n".join(docs) + "\n")
    _stamp(name).write_text(_stamp_key(name))
    log(f"built {name} in {time.monotonic() - t0:.0f}s")


def build(log: Log = print) -> Path:
    """Build (once) etcd, the control plane, kwok and, if needed, kubectl; return the bin dir.

    Serialised by a lock file: two sessions on one machine never build into the same place at once.
    """
    import fcntl

    bin_dir().mkdir(parents=True, exist_ok=True)
    with open(build_root() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(log)


def _build_locked(log: Log) -> Path:
    if not _built("etcd"):
        _build_simple("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, "go.etcd.io/etcd/server/v3", log)
    kube = [n for n in KUBE_CMDS if not _built(n)]
    if kubectl_needed() and not _built("kubectl"):
        kube.append("kubectl")
    if kube:
        log(f"building {', '.join(kube)} from k8s.io/kubernetes v{K8S_VERSION} "
            "(first time only: long on 2 cores)")
        _build_kube(kube, log)
    if not _built("kwok"):
        _build_simple("kwok", "sigs.k8s.io/kwok", KWOK_VERSION, "sigs.k8s.io/kwok/cmd/kwok", log)
    return bin_dir()


# --------------------------------------------------------------------------- PKI

def _key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(subject_cn: str, key, *, ca=None, ca_key=None, orgs: tuple[str, ...] = (),
          server: bool = False, client: bool = False, ips: tuple[str, ...] = (),
          dns: tuple[str, ...] = ()):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject_cn))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(ca.subject if ca is not None else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=365)))
    if ca is None:
        b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                           crl_sign=False, content_commitment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                             critical=False))
        sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key if ca_key is not None else key, hashes.SHA256())


#: Client identities: file stem -> (CN, organisations). RBAC bootstrap roles exist for each.
_CLIENTS = {"admin": ("kubernetes-admin", ("system:masters",)),
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            "kwok": ("kwok-controller", ("system:masters",))}
#: First address of the service range: the `kubernetes` Service's ClusterIP.
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert (127.0.0.1), client certs, service-account key pair (once)."""
    from cryptography.hazmat.primitives import serialization

    if (pki / "ca.crt").exists() and all((pki / f"{c}.crt").exists() for c in _CLIENTS):
        return
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("spire-migration-lab-kubernetes-ca", ca_key)
    _write(pki / "ca.key", _pem_key(ca_key))
    _write(pki / "ca.crt", _pem_cert(ca), 0o644)
    key = _key()
    srv = _cert("kube-apiserver", key, ca=ca, ca_key=ca_key, server=True, ips=("127.0.0.1", SERVICE_IP),
                dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local"))
    _write(pki / "apiserver.key", _pem_key(key))
    _write(pki / "apiserver.crt", _pem_cert(srv), 0o644)
    for stem, (cn, orgs) in _CLIENTS.items():
        key = _key()
        _write(pki / f"{stem}.key", _pem_key(key))
        _write(pki / f"{stem}.crt", _pem_cert(_cert(cn, key, ca=ca, ca_key=ca_key, orgs=orgs, client=True)),
               0o644)
    sa = _key()
    _write(pki / "sa.key", _pem_key(sa))
    _write(pki / "sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)


def _kubeconfig(server: str, pki: Path, stem: str) -> str:
    # Paths, not embedded data: the files stay under the lab root with the kubeconfig.
    return f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
    certificate-authority: {pki / 'ca.crt'}
users:
- name: {stem}
  user:
    client-certificate: {pki / f'{stem}.crt'}
    client-key: {pki / f'{stem}.key'}
contexts:
- name: lab
  context:
    cluster: lab
    user: {stem}
    namespace: default
current-context: lab
"""


# --------------------------------------------------------------------------- run

def kube_root(root: Path) -> Path:
    return Path(root) / "kubernetes"


def kubeconfig_path(root: Path) -> Path:
    return kube_root(root) / "kubeconfig"


#: Start order; down() stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


def _https_get(url: str, pki: Path | None, timeout: float = 3.0) -> tuple[int, str]:
    if pki is not None:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    else:
        ctx = ssl._create_unverified_context()  # noqa: S323 - loopback health check of a self-signed port
    try:
        with urllib.request.urlopen(url, context=ctx if url.startswith("https") else None,
                                    timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _wait(name: str, ready: Callable[[], bool], kr: Path, pid: int, timeout: float) -> None:
    """Poll *ready* until it holds; fail at once if the process exits, or at the deadline."""
    from spire_migration import process

    deadline = time.monotonic() + timeout
    last = ""
    delay = 0.1
    while True:
        try:
            if ready():
                return
        except (OSError, ValueError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if process.proc_info(pid) is None:
            raise LabError(f"{name} exited while starting", expected=f"{name} running and ready",
                           found=f"{last}\n--- {kr / (name + '.log')} (tail) ---\n{_log_tail(kr / (name + '.log'))}",
                           remedy=f"read {kr / (name + '.log')}")
        if time.monotonic() >= deadline:
            raise LabError(f"{name} was not ready within {timeout:g}s", expected=f"{name} ready",
                           found=f"{last}\n--- {kr / (name + '.log')} (tail) ---\n{_log_tail(kr / (name + '.log'))}",
                           remedy=f"read {kr / (name + '.log')}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 1.0)


def _running(kr: Path, name: str):
    from spire_migration import process

    return process.find(name, kr / f"{name}.pid")


def _start(kr: Path, name: str, argv: list[str]):
    from spire_migration import process

    return process.start(argv, log=kr / f"{name}.log", pid_file=kr / f"{name}.pid",
                         env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, cwd=kr)


def _load_state(kr: Path) -> dict:
    try:
        return json.loads((kr / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def up(root: Path, log: Log = print, timeout: float = 120.0) -> Path:
    """Start (or reuse) etcd, the control plane and kwok under root/kubernetes; return the kubeconfig."""
    bins = build(log)
    kr = kube_root(root)
    kr.mkdir(parents=True, exist_ok=True)
    pki = kr / "pki"
    make_pki(pki)
    state = _load_state(kr)
    keys = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")
    # A running control plane keeps its ports. A stopped one gets its old ports back when they
    # are free (etcd's data remembers its peer URL), fresh ones otherwise.
    if not (state and all(_running(kr, c) for c in COMPONENTS[:2])):
        from spire_migration import process

        for c in COMPONENTS:  # nothing half-up from an earlier run
            info = _running(kr, c)
            if info:
                process.stop(info, pid_file=kr / f"{c}.pid")
        if not (all(isinstance(state.get(k), int) for k in keys)
                and all(_port_free(state[k]) for k in keys)):
            state = {k: _free_port() for k in keys}
    (kr / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    server = f"https://127.0.0.1:{state['apiserver']}"
    for stem in _CLIENTS:
        (kr / f"{stem}.kubeconfig").write_text(_kubeconfig(server, pki, stem))
    kubeconfig = kubeconfig_path(root)
    kubeconfig.write_text(_kubeconfig(server, pki, "admin"))
    kubeconfig.chmod(0o600)

    t_all = time.monotonic()
    etcd_url = f"http://127.0.0.1:{state['etcd_client']}"
    peer_url = f"http://127.0.0.1:{state['etcd_peer']}"
    specs: dict[str, tuple[list[str], Callable[[], bool]]] = {
        "etcd": ([str(bins / "etcd"), "--name", "lab", "--data-dir", str(kr / "etcd-data"),
                  "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                  "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                  "--initial-cluster", f"lab={peer_url}", "--initial-cluster-state", "new",
                  "--unsafe-no-fsync", "--log-level", "warn"],
                 lambda: _https_get(f"{etcd_url}/health", None)[0] == 200),
        "kube-apiserver": ([str(bins / "kube-apiserver"),
                            "--etcd-servers", etcd_url,
                            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                            "--secure-port", str(state["apiserver"]),
                            "--endpoint-reconciler-type", "none",
                            "--cert-dir", str(kr / "apiserver-certs"),
                            "--tls-cert-file", str(pki / "apiserver.crt"),
                            "--tls-private-key-file", str(pki / "apiserver.key"),
                            "--client-ca-file", str(pki / "ca.crt"),
                            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                            "--service-account-key-file", str(pki / "sa.pub"),
                            "--service-account-signing-key-file", str(pki / "sa.key"),
                            "--service-cluster-ip-range", SERVICE_CIDR,
                            "--authorization-mode", "Node,RBAC",
                            "--allow-privileged=true", "--profiling=false", "--v=1"],
                           lambda: _https_get(f"{server}/readyz", pki)[0] == 200),
        "kube-controller-manager": ([str(bins / "kube-controller-manager"),
                                     "--kubeconfig", str(kr / "controller-manager.kubeconfig"),
                                     "--bind-address", "127.0.0.1",
                                     "--secure-port", str(state["controller_manager"]),
                                     "--cert-dir", str(kr / "controller-manager-certs"),
                                     "--leader-elect=false", "--use-service-account-credentials=true",
                                     "--service-account-private-key-file", str(pki / "sa.key"),
                                     "--root-ca-file", str(pki / "ca.crt"),
                                     "--cluster-signing-cert-file", str(pki / "ca.crt"),
                                     "--cluster-signing-key-file", str(pki / "ca.key"),
                                     "--profiling=false", "--v=1"],
                                    lambda: _https_get(f"https://127.0.0.1:{state['controller_manager']}/healthz",
                                                       None)[0] == 200),
        "kube-scheduler": ([str(bins / "kube-scheduler"),
                            "--kubeconfig", str(kr / "scheduler.kubeconfig"),
                            "--bind-address", "127.0.0.1", "--secure-port", str(state["scheduler"]),
                            "--cert-dir", str(kr / "scheduler-certs"),
                            "--leader-elect=false", "--profiling=false", "--v=1"],
                           lambda: _https_get(f"https://127.0.0.1:{state['scheduler']}/healthz",
                                              None)[0] == 200),
        "kwok": ([str(bins / "kwok"), "--config", str(kwok_stages()),
                  "--kubeconfig", str(kr / "kwok.kubeconfig"),
                  "--manage-single-node", NODE_NAME,
                  "--node-ip", "10.0.0.1", "--cidr", "10.244.0.0/24",
                  "--node-lease-duration-seconds", "40"],
                 lambda: _node_ready(kubeconfig)),
    }
    for name in COMPONENTS:
        argv, ready = specs[name]
        info = _running(kr, name)
        t0 = time.monotonic()
        if info is None:
            if name == "kwok":
                _ensure_node(kubeconfig)
            info = _start(kr, name, argv)
        _wait(name, ready, kr, info.pid, timeout)
        log(f"{name} ready (pid {info.pid}, {time.monotonic() - t0:.1f}s)")
    log(f"Kubernetes v{K8S_VERSION} control plane up in {time.monotonic() - t_all:.1f}s; "
        f"KUBECONFIG={kubeconfig}")
    return kubeconfig


def _api(kubeconfig: Path):
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _ensure_node(kubeconfig: Path) -> None:
    """Register the fake node kwok manages (what kwokctl's `create node` does)."""
    from kubernetes.client.exceptions import ApiException

    core = _api(kubeconfig)
    alloc = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME,
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": alloc, "capacity": alloc}}
    try:
        core.create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise LabError(f"cannot register node {NODE_NAME}", expected="HTTP 201 or 409",
                           found=f"HTTP {exc.status}: {exc.body}") from exc


def _node_ready(kubeconfig: Path) -> bool:
    node = _api(kubeconfig).read_node(NODE_NAME, _request_timeout=5)
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def down(root: Path, log: Log = print) -> None:
    """Stop every component this lab started, by pid (reverse order); idempotent."""
    from spire_migration import process

    kr = kube_root(root)
    for name in reversed(COMPONENTS):
        info = _running(kr, name)
        if info is None:
            (kr / f"{name}.pid").unlink(missing_ok=True)
            continue
        process.stop(info, timeout=20.0, pid_file=kr / f"{name}.pid")
        log(f"stopped {name} (pid {info.pid})")


def status(root: Path) -> list[str]:
    """One line per component: running with its pid and port, or stopped."""
    kr = kube_root(root)
    state = _load_state(kr)
    ports = {"etcd": state.get("etcd_client"), "kube-apiserver": state.get("apiserver"),
             "kube-controller-manager": state.get("controller_manager"),
             "kube-scheduler": state.get("scheduler"), "kwok": None}
    out = []
    for name in COMPONENTS:
        info = _running(kr, name)
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
    if os.access(bin_dir() / "kubectl", os.X_OK):
        env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env
