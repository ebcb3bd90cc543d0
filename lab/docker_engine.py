"""A private Docker engine for the lab, and the workload image it runs.

Everything lives under one root folder (socket, data, exec state, pid file,
log), so a lab engine never touches the machine's own /var/run/docker.sock:

    root/docker.sock   root/data/   root/exec/   root/dockerd.pid   root/dockerd.log

The engine runs with ``--iptables=false --ip6tables=false --bridge=none``:
containers use the host network (``--network host``), which is what the
workload needs anyway (it talks to 127.0.0.1).

The workload image is built without any registry: a tiny root filesystem
(symlinks to /usr, /etc files, the app) imported with ``docker import``. The
Python interpreter is *not* in the image: containers bind-mount the host's
interpreter prefix and /usr read-only (see :func:`python_mounts`). The app
file ``workload/mtls_app.py`` is *copied into* the image at /app/mtls_app.py;
its sha256 is a label on the image, so a rebuild happens only when it changes.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from spire_migration.node import process
from .errors import LabError

APP_FILE = Path(__file__).resolve().parent.parent / "workload" / "mtls_app.py"
APP_IN_IMAGE = "/app/mtls_app.py"
HASH_LABEL = "io.spire-migration.app-sha256"
DEFAULT_TAG = "spire-migration/mtls-app:lab"


def _paths(root: Path) -> dict[str, Path]:
    root = Path(root)
    return {"sock": root / "docker.sock", "data": root / "data", "exec": root / "exec",
            "pid": root / "dockerd.pid", "log": root / "dockerd.log"}


def docker_host(root: Path) -> str:
    return f"unix://{_paths(root)['sock']}"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 2.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _api(sock: Path, method: str, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = _UnixHTTP(str(sock), timeout)
    try:
        conn.request(method, url)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _ping(sock: Path) -> bool:
    try:
        return _api(sock, "GET", "/_ping")[0] == 200
    except OSError:
        return False


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_dockerd(pid: int) -> bool:
    info = process.proc_info(pid)
    return info is not None and process.matches(info, "dockerd")


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(root: Path, timeout: float = 30.0) -> str:
    """Start dockerd under *root* (or reuse the one already running there); return DOCKER_HOST."""
    p = _paths(root)
    Path(root).mkdir(parents=True, exist_ok=True)
    pid = _read_pid(p["pid"])
    if pid and _is_dockerd(pid) and _ping(p["sock"]):
        return docker_host(root)
    cmd = ["dockerd", "-H", docker_host(root), "--data-root", str(p["data"]),
           "--exec-root", str(p["exec"]), "--pidfile", str(p["pid"]),
           "--iptables=false", "--ip6tables=false", "--bridge=none"]
    log = open(p["log"], "ab")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=process.daemon_env())
    except FileNotFoundError as exc:
        raise LabError("dockerd is not installed", expected="dockerd on PATH",
                       found=str(exc), remedy="apt-get install docker.io") from exc
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError("dockerd exited during start", expected="a running dockerd",
                           found=f"exit code {proc.returncode}; log {p['log']}:\n{_log_tail(p['log'])}",
                           remedy="read the log; another dockerd may own this root")
        if _ping(p["sock"]):
            return docker_host(root)
        time.sleep(0.1)
    proc.terminate()
    raise LabError("dockerd did not answer in time", expected=f"GET /_ping on {p['sock']} within {timeout}s",
                   found=_log_tail(p["log"]), remedy="read the log")


def mounts_under(root: Path) -> list[str]:
    root_s = str(Path(root).resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt == root_s or mnt.startswith(root_s + "/"):
            found.append(mnt)
    return sorted(set(found), key=len, reverse=True)


def stop(root: Path, timeout: float = 30.0) -> list[str]:
    """Stop the dockerd of *root* (SIGTERM, wait), then unmount what it left. Idempotent.

    Returns the mount points it had to unmount (e.g. ``exec/netns/default``).
    """
    p = _paths(root)
    pid = _read_pid(p["pid"])
    if pid and _is_dockerd(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_dockerd(pid):
            if time.monotonic() > deadline:
                raise LabError("dockerd did not stop", expected=f"pid {pid} gone within {timeout}s",
                               found="still running", remedy=f"kill -9 {pid}")
            time.sleep(0.1)
    if not Path(root).exists():
        return []
    unmounted = mounts_under(root)
    for mnt in unmounted:
        r = subprocess.run(["umount", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True, text=True)
    left = mounts_under(root)
    if left:
        raise LabError("mounts left under the lab root", expected="none", found=", ".join(left),
                       remedy="umount them by hand")
    return unmounted


def interpreter() -> str:
    """The Python the workload runs with: this environment's (a venv's site-packages hold py-spiffe)."""
    return os.path.join(os.path.realpath(sys.prefix), "bin", "python3")


def python_mounts() -> list[str]:
    """Read-only bind mounts that give a container the host's Python: its prefix (and the venv's,
    where the workload's packages are when the suite runs from one) and /usr."""
    prefixes = dict.fromkeys(os.path.realpath(p) for p in (sys.base_prefix, sys.prefix))
    return [f"{p}:{p}:ro" for p in prefixes] + ["/usr:/usr:ro"]


def app_hash(app: Path = APP_FILE) -> str:
    """The image label: the app file and the interpreter the image's entrypoint names."""
    return hashlib.sha256(Path(app).read_bytes() + interpreter().encode()).hexdigest()


def image_label(host: str, tag: str, label: str = HASH_LABEL) -> str | None:
    """The value of ``label`` on image ``tag`` of the engine at ``host`` (None: no such image)."""
    sock = Path(host.removeprefix("unix://"))
    status, body = _api(sock, "GET", f"/images/{tag}/json", timeout=10)
    if status != 200:
        return None
    labels = (json.loads(body).get("Config") or {}).get("Labels") or {}
    return labels.get(label)


def tar_add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, link: str | None = None,
            mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    """One member of an image's root filesystem: a folder (no ``data``), a symlink or a file."""
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid = int(time.time()), mode, uid, gid
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def base_rootfs(tar: tarfile.TarFile, passwd: str = "", group: str = "") -> None:
    """What every lab image holds: top folders, the /usr symlinks, root's /etc files (plus the
    ``passwd`` and ``group`` lines given) and the machine's ld.so.cache."""
    for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "run", "root", "var"):
        tar_add(tar, d, mode=0o1777 if d == "tmp" else 0o755)
    for name in ("bin", "lib", "lib64", "sbin"):
        tar_add(tar, name, link=f"usr/{name}")
    tar_add(tar, "etc/passwd", data=("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                                     + passwd).encode(), mode=0o644)
    tar_add(tar, "etc/group", data=f"root:x:0:\nnogroup:x:65534:\n{group}".encode(), mode=0o644)
    tar_add(tar, "etc/nsswitch.conf", data=b"passwd: files\ngroup: files\nhosts: files dns\n", mode=0o644)
    tar_add(tar, "etc/hosts", data=b"127.0.0.1 localhost\n", mode=0o644)
    if Path("/etc/ld.so.cache").is_file():
        tar_add(tar, "etc/ld.so.cache", data=Path("/etc/ld.so.cache").read_bytes(), mode=0o644)


def rootfs_tar(app: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        base_rootfs(tar)
        tar_add(tar, "app")
        tar_add(tar, "app/mtls_app.py", data=Path(app).read_bytes(), mode=0o644)
    return buf.getvalue()


def build_workload_image(docker_host: str, tag: str = DEFAULT_TAG, app: Path = APP_FILE,
                         timeout: float = 120.0) -> str:
    """Build (or keep) the workload image *tag*; return its image ID.

    Skipped when the image exists and its label matches the app file's sha256.
    """
    digest = app_hash(app)
    if image_label(docker_host, tag) == digest:
        return _image_id(docker_host, tag)
    python = interpreter()
    changes = [
        f"LABEL {HASH_LABEL}={digest}",
        f"ENV PATH={os.path.dirname(python)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PYTHONUNBUFFERED=1",
        "ENV PYTHONDONTWRITEBYTECODE=1",
        f'ENTRYPOINT ["{python}", "{APP_IN_IMAGE}"]',
        'CMD ["check"]',
    ]
    cmd = ["docker", "-H", docker_host, "import"]
    for c in changes:
        cmd += ["--change", c]
    cmd += ["-", tag]
    r = subprocess.run(cmd, input=rootfs_tar(app), capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise LabError(f"docker import of {tag} failed", expected="exit 0",
                       found=r.stderr.decode(errors="replace").strip(), remedy="is the lab dockerd running?")
    return _image_id(docker_host, tag)


def _image_id(host: str, tag: str) -> str:
    status, body = _api(Path(host.removeprefix("unix://")), "GET", f"/images/{tag}/json", timeout=10)
    if status != 200:
        raise LabError(f"image {tag} not found after build", expected="the image", found=f"HTTP {status}")
    return json.loads(body)["Id"]
