"""A software TPM (swtpm) for the lab: provision, start, stop.

Everything lives in two folders the caller owns: ``state_dir`` (TPM state,
sockets, pid file, log) and ``ca_dir`` (the lab's private EK CA; never the
machine-wide /var/lib/swtpm-localca). The TPM answers on the unix socket
``state_dir/swtpm.sock``; tpm2-tss uses it as ``swtpm:path=<sock>`` and SPIRE
as ``tpm_device_path = "<sock>"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from spire_migration.node import process
from .errors import LabError
from spire_migration.fileio import write_file

SOCK = "swtpm.sock"
PID_FILE = "swtpm.pid"
LOG_FILE = "swtpm.log"
EK_CERT_NV_INDEX = 0x01C00002
LOCALCA_OPTIONS = Path("/etc/swtpm-localca.options")


def sock_path(state_dir: Path) -> Path:
    """The TPM command socket (its control socket is ``<sock>.ctrl``)."""
    return Path(state_dir) / SOCK


def ctrl_path(state_dir: Path) -> Path:
    """The control socket; tpm2-tss's swtpm TCTI insists on ``<sock>.ctrl``."""
    return Path(state_dir) / (SOCK + ".ctrl")


def endorsement_ca_path(ca_dir: Path) -> Path:
    """The EK certificate's direct issuer: what SPIRE's ``endorsement_ca_path`` must hold."""
    return Path(ca_dir) / "issuercert.pem"


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise LabError(f"{tool} is not installed", expected=f"{tool} on PATH",
                       found="not found", remedy="apt-get install swtpm swtpm-tools")
    return found


def _write_ca_config(ca_dir: Path) -> Path:
    ca_dir = Path(ca_dir).resolve()
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    localca = ca_dir / "swtpm-localca.conf"
    write_file(localca, f"statedir = {ca_dir}\n"
                        f"signingkey = {ca_dir / 'signkey.pem'}\n"
                        f"issuercert = {endorsement_ca_path(ca_dir)}\n"
                        f"certserial = {ca_dir / 'certserial'}\n")
    setup = ca_dir / "swtpm_setup.conf"
    lines = [f"create_certs_tool = {_need('swtpm_localca')}",
             f"create_certs_tool_config = {localca}"]
    if LOCALCA_OPTIONS.is_file():
        lines.append(f"create_certs_tool_options = {LOCALCA_OPTIONS}")
    lines.append("active_pcr_banks = sha256")
    write_file(setup, "\n".join(lines) + "\n")
    return setup


def provision(state_dir: Path, ca_dir: Path) -> None:
    """Create a fresh TPM state (EK + EK cert in NV 0x01c00002, banks sha1+sha256).

    Overwrites any previous state in ``state_dir``; the CA in ``ca_dir`` is created
    on first use and reused afterwards. The TPM must not be running.
    """
    state_dir = Path(state_dir).resolve()
    if is_running(state_dir):
        raise LabError(f"swtpm is running on {state_dir}",
                       expected="a stopped swtpm before provisioning",
                       found=f"pid {_read_pid(state_dir)}", remedy="call lab.swtpm.stop() first")
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    config = _write_ca_config(ca_dir)
    ekcerts = state_dir / "ekcerts"
    shutil.rmtree(ekcerts, ignore_errors=True)
    ekcerts.mkdir()
    cmd = [_need("swtpm_setup"), "--tpm2", "--tpmstate", str(state_dir),
           "--config", str(config), "--create-ek-cert", "--create-platform-cert",
           "--overwrite", "--pcr-banks", "sha1,sha256",
           "--write-ek-cert-files", str(ekcerts),
           "--logfile", str(state_dir / "swtpm_setup.log")]
    (state_dir / "swtpm_setup.log").unlink(missing_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        log = (state_dir / "swtpm_setup.log")
        detail = (proc.stderr + proc.stdout + (log.read_text() if log.exists() else "")).strip()
        raise LabError("swtpm_setup failed", expected="exit code 0",
                       found=f"exit {proc.returncode}: {detail[-2000:]}",
                       remedy=f"read {log}")
    if not endorsement_ca_path(ca_dir).is_file():
        raise LabError("swtpm_setup made no EK CA", expected=str(endorsement_ca_path(ca_dir)),
                       found="no such file")


def _read_pid(state_dir: Path) -> int | None:
    try:
        return int((Path(state_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _is_our_swtpm(pid: int, state_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(cmdline) and os.path.basename(cmdline[0]) == b"swtpm"
            and any(str(sock_path(state_dir)).encode() in arg for arg in cmdline))


def is_running(state_dir: Path) -> bool:
    """True when the pid file names a live swtpm serving this ``state_dir``."""
    state_dir = Path(state_dir).resolve()
    pid = _read_pid(state_dir)
    return pid is not None and _alive(pid) and _is_our_swtpm(pid, state_dir)


def start(state_dir: Path, timeout: float = 10) -> int:
    """Start ``swtpm socket --tpm2`` as a daemon on ``state_dir``; return its pid."""
    state_dir = Path(state_dir).resolve()
    if not (state_dir / "tpm2-00.permall").is_file():
        raise LabError(f"no TPM state in {state_dir}", expected="tpm2-00.permall",
                       found="no such file", remedy="call lab.swtpm.provision() first")
    if is_running(state_dir):
        raise LabError(f"swtpm already runs on {state_dir}", expected="no running swtpm",
                       found=f"pid {_read_pid(state_dir)}", remedy="call lab.swtpm.stop() first")
    sock, ctrl = sock_path(state_dir), ctrl_path(state_dir)
    if len(str(ctrl).encode()) > 107:
        raise LabError("swtpm socket path is too long", expected="at most 107 bytes",
                       found=f"{len(str(ctrl).encode())} bytes: {ctrl}",
                       remedy="use a shorter state_dir")
    for stale in (sock, ctrl, state_dir / PID_FILE):
        stale.unlink(missing_ok=True)
    cmd = [_need("swtpm"), "socket", "--tpm2", "--tpmstate", f"dir={state_dir}",
           "--server", f"type=unixio,path={sock}", "--ctrl", f"type=unixio,path={ctrl}",
           "--flags", "not-need-init,startup-clear", "--daemon",
           "--pid", f"file={state_dir / PID_FILE}",
           "--log", f"file={state_dir / LOG_FILE},level=5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=process.daemon_env())
    if proc.returncode != 0:
        raise LabError("swtpm did not start", expected="exit code 0",
                       found=f"exit {proc.returncode}: {(proc.stderr + proc.stdout).strip()}",
                       remedy=f"read {state_dir / LOG_FILE}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _read_pid(state_dir)
        if pid and _alive(pid) and sock.is_socket() and ctrl.is_socket():
            return pid
        time.sleep(0.02)
    raise LabError("swtpm did not come up", expected=f"{sock} and a live pid in {PID_FILE}",
                   found=f"pid={_read_pid(state_dir)} sock={sock.exists()} within {timeout}s",
                   remedy=f"read {state_dir / LOG_FILE}")


def stop(state_dir: Path, timeout: float = 10) -> None:
    """Shut swtpm down cleanly (``swtpm_ioctl -s``), escalating to SIGTERM/SIGKILL of its pid."""
    state_dir = Path(state_dir).resolve()
    pid = _read_pid(state_dir)
    if pid is not None and _alive(pid) and _is_our_swtpm(pid, state_dir):
        deadline = time.monotonic() + timeout
        if ctrl_path(state_dir).is_socket():
            try:
                subprocess.run([_need("swtpm_ioctl"), "--unix", str(ctrl_path(state_dir)), "-s"],
                               capture_output=True, timeout=max(1.0, timeout / 2))
            except subprocess.TimeoutExpired:
                pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and _alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + max(2.0, timeout / 4)
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _alive(pid):
                break
        if _alive(pid):
            raise LabError(f"swtpm pid {pid} does not stop", expected="process gone",
                           found="still alive after SIGKILL")
    for leftover in (sock_path(state_dir), ctrl_path(state_dir), state_dir / PID_FILE):
        leftover.unlink(missing_ok=True)
