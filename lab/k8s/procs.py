"""Processes of the Kubernetes lab: started by pid file, polled ready with a deadline."""

from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from spire_migration.node import process
from ..errors import LabError
from .gobuild import bin_dir


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


def https_get(url: str, pki: Path | None, timeout: float = 3.0) -> tuple[int, str]:
    """GET *url*: with the lab CA and admin client cert from *pki*, or unverified (loopback health)."""
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


def running(kr: Path, name: str) -> process.ProcInfo | None:
    """Component *name* of the directory *kr*, by its pid file (and our build of its binary)."""
    return process.find(bin_dir() / name, kr / f"{name}.pid")


def start(kr: Path, name: str, argv: list[str]) -> process.ProcInfo:
    """Start component *name* with its log and pid file in *kr* (KUBECONFIG not inherited)."""
    return process.start(argv, log=kr / f"{name}.log", pid_file=kr / f"{name}.pid",
                         env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, cwd=kr)


def wait_ready(name: str, ready: Callable[[], bool], log: Path, pid: int, timeout: float) -> None:
    """Poll *ready* until it holds; fail at once if the process exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    last = ""
    delay = 0.1
    while True:
        try:
            if ready():
                return
        except (OSError, ValueError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        exited = process.proc_info(pid) is None
        if exited or time.monotonic() >= deadline:
            what = f"{name} exited while starting" if exited else f"{name} was not ready within {timeout:g}s"
            raise LabError(what, expected=f"{name} running and ready",
                           found=f"{last}\n--- {log} (tail) ---\n{log_tail(log)}", remedy=f"read {log}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 1.0)
