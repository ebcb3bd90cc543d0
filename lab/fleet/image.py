"""The lab host image: systemd as PID 1, SPIRE's, the TPM's, the workload's and sshd's units.

Built without a registry (``docker import`` of a tar made here). The machine's /usr is
bind-mounted read-only into every host, so the image holds only /etc and empty folders:
users (root, sshd's privilege separation user, the workload's ``mtls``), the units, and
masks for every unit of the machine's /usr that would fail or reach outside in a container
(networking, resolved, docker, avahi, nftables, firstboot, the machine's own ssh units).

Two targets, one per role; the host's systemd is started with ``--unit=<target>``, which pulls
in only journald and the lab's units (they have ``DefaultDependencies=no``: no sysinit.target).
The image tag carries a hash of its files: a change to a unit builds a new image.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

from ..docker_engine import base_rootfs, image_label, tar_add
from .docker import Docker
from .layout import (AGENT_CONF, AGENT_SOCKET, APP_PORT, OPT_SPIRE, SERVER_CONF, TPM_DEVICE, TPM_STATE,
                     WORKLOAD_UID, WORKLOAD_USER)

TAG = "spire-migration/fleet-host:lab"
LABEL = "io.spire-migration.fleet-image-sha256"
SERVER_TARGET = "fleet-server.target"
AGENT_TARGET = "fleet-agent.target"
MASKED = ("avahi-daemon.service", "avahi-daemon.socket", "docker.service", "docker.socket",
          "nftables.service", "systemd-firstboot.service", "systemd-networkd.service",
          "systemd-networkd.socket", "systemd-networkd-wait-online.service", "systemd-resolved.service",
          "systemd-timesyncd.service", "systemd-logind.service", "ssh.socket", "getty.target",
          "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-remount-fs.service")
_LAB_UNIT = """DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target
"""


def _service(description: str, service: str, after: str = "", user: str = "") -> str:
    after_lines = f"After={after}\nWants={after}\n" if after else ""
    return (f"[Unit]\nDescription={description}\n{_LAB_UNIT}{after_lines}\n[Service]\n{service}"
            + ("Restart=on-failure\nRestartSec=2\n" if "Restart=" not in service else "")
            + (f"User={user}\nGroup={user}\n" if user else ""))


def units(python: str, app: str) -> dict[str, str]:
    """Every unit file of /etc/systemd/system, by name. ``python``/``app``: the workload's
    interpreter (the project's venv) and mtls_app.py, at their paths on the machine."""
    spire = f"WorkingDirectory={OPT_SPIRE}\n"
    return {
        "spire-server.service": _service(
            "SPIRE Server", f"ExecStart={OPT_SPIRE}/bin/spire-server run -config {SERVER_CONF}\n{spire}"),
        "spire-agent.service": _service(
            "SPIRE Agent", f"ExecStart={OPT_SPIRE}/bin/spire-agent run -config {AGENT_CONF}\n{spire}",
            after="swtpm.service"),
        "swtpm.service": _service(
            f"software TPM at {TPM_DEVICE}",
            f"Type=forking\nPIDFile=/run/swtpm.pid\nExecStartPre=/bin/rm -f {TPM_DEVICE} {TPM_DEVICE}.ctrl\n"
            f"ExecStart=/usr/bin/swtpm socket --tpm2 --tpmstate dir={TPM_STATE} "
            f"--server type=unixio,path={TPM_DEVICE} --ctrl type=unixio,path={TPM_DEVICE}.ctrl "
            f"--flags not-need-init,startup-clear --daemon --pid file=/run/swtpm.pid "
            f"--log file={TPM_STATE}/swtpm.log,level=1\n"),
        "mtls-app.service": _service(
            "the guide's mTLS workload (server and client on this host's 127.0.0.1)",
            f"Environment=SPIFFE_ENDPOINT_SOCKET=unix://{AGENT_SOCKET}\n"
            f"Environment=MTLS_ADDR=127.0.0.1:{APP_PORT}\nEnvironment=PYTHONUNBUFFERED=1\n"
            f"Environment=PYTHONDONTWRITEBYTECODE=1\nExecStart={python} {app} demo\n"
            "Restart=always\nRestartSec=2\n", after="spire-agent.service", user=WORKLOAD_USER),
        "ssh.service": _service(
            "OpenSSH server on the lab network only",
            "ExecStart=/usr/sbin/sshd -D -e -f /etc/ssh/sshd_config\nRuntimeDirectory=sshd\n"
            "RuntimeDirectoryMode=0755\n"),
        SERVER_TARGET: _target("lab server host", "spire-server.service ssh.service"),
        AGENT_TARGET: _target("lab agent host", "swtpm.service spire-agent.service mtls-app.service ssh.service"),
    }


def _target(description: str, wants: str) -> str:
    return (f"[Unit]\nDescription={description}\n{_LAB_UNIT}AllowIsolate=yes\n"
            f"Wants=systemd-journald.service {wants}\n")


def rootfs(python: str, app: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        base_rootfs(tar, passwd=f"sshd:x:104:65534::/run/sshd:/usr/sbin/nologin\n"
                                f"{WORKLOAD_USER}:x:{WORKLOAD_UID}:{WORKLOAD_UID}::/nonexistent:/usr/sbin/nologin\n",
                    group=f"systemd-journal:x:101:\n{WORKLOAD_USER}:x:{WORKLOAD_UID}:\n")
        tar_add(tar, "etc/shadow", data=b"root:*:19000:0:99999:7:::\n", mode=0o640)
        tar_add(tar, "etc/machine-id", data=b"", mode=0o444)
        tar_add(tar, "etc/os-release", link="../usr/lib/os-release")
        tar_add(tar, "var/run", link="../run")
        tar_add(tar, "var/lock", link="../run/lock")
        for d in ("etc/systemd", "etc/systemd/system", "etc/ssh", "etc/spire-migration", "opt", "opt/spire",
                  "var/lib", "var/lib/swtpm", "var/log", "var/tmp"):
            tar_add(tar, d, mode=0o1777 if d == "var/tmp" else 0o755)
        for name, text in units(python, app).items():
            tar_add(tar, f"etc/systemd/system/{name}", data=text.encode(), mode=0o644)
        for name in MASKED:
            tar_add(tar, f"etc/systemd/system/{name}", link="/dev/null")
    return buf.getvalue()


def digest(tar_bytes: bytes) -> str:
    """What the image is made of (every member's name, mode, link and content; no mtimes)."""
    h = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else b""
            h.update(f"{m.name}\0{m.mode:o}\0{m.linkname}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def ensure(docker: Docker, python: str, app: str) -> str:
    """Build the host image unless the engine already has this one; return its tag."""
    tar_bytes = rootfs(python, app)
    want = digest(tar_bytes)
    if image_label(docker.host, TAG, LABEL) != want:
        docker.run("import", "--change", f"LABEL {LABEL}={want}", "--change", "ENV container=docker",
                   "-", TAG, stdin=tar_bytes)
    return TAG
