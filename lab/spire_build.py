"""Real SPIRE binaries for the lab: an existing install, or built once and cached.

The version is pinned here and nowhere else. Building goes through a tiny
wrapper module (``go get -tool`` then ``go install``) because the Go module
proxy here lists no SPIRE versions (so ``go install pkg@v1.15.3`` is refused)
and does not serve ``github.com/Keyfactor/ejbca-go-client-sdk@v1.1.0``, a
dependency of SPIRE's EJBCA UpstreamAuthority plugin only. The wrapper pins
that one module to v1.0.2 (served, API-compatible for the plugin); every other
module is exactly what SPIRE's go.mod names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import LabError

SPIRE_VERSION = "1.15.3"
_REPLACES = {"github.com/Keyfactor/ejbca-go-client-sdk": "v1.0.2"}
_CMDS = ("spire-server", "spire-agent")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spire-tpm-migration"


def _version_ok(bin_dir: Path) -> bool:
    for cmd in _CMDS:
        exe = bin_dir / cmd
        if not os.access(exe, os.X_OK):
            return False
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        version = (out.stdout + out.stderr).strip()
        if not version.startswith(SPIRE_VERSION.rsplit(".", 1)[0]):
            return False
    return True


def find_spire() -> Path | None:
    """An existing install of SPIRE 1.15: $SPIRE_BIN_DIR, /opt/spire/bin, or our cache."""
    candidates = [os.environ.get("SPIRE_BIN_DIR"), "/opt/spire/bin",
                  str(cache_dir() / f"spire-{SPIRE_VERSION}" / "bin")]
    for cand in candidates:
        if cand and _version_ok(Path(cand)):
            return Path(cand)
    return None


def build_spire(log=print) -> Path:
    """Build spire-server and spire-agent with the Go toolchain (CGO on, for sqlite)."""
    if shutil.which("go") is None:
        raise LabError("Go is not installed", expected="go >= 1.26.6 on PATH",
                       found="no go binary", remedy="install Go, or set SPIRE_BIN_DIR to a SPIRE 1.15 install")
    root = cache_dir() / f"spire-{SPIRE_VERSION}"
    mod = root / "wrapper"
    bin_dir = root / "bin"
    mod.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "1", "GOBIN": str(bin_dir), "GOFLAGS": "-buildvcs=false"}

    def go(*args: str) -> None:
        proc = subprocess.run(["go", *args], cwd=mod, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"go {' '.join(args[:2])} failed while building SPIRE {SPIRE_VERSION}",
                           expected="exit 0", found=proc.stderr.strip()[-2000:])

    if not (mod / "go.mod").exists():
        go("mod", "init", "lab.local/spire-build")
    for module, version in _REPLACES.items():
        go("mod", "edit", f"-replace={module}={module}@{version}")
    log(f"building SPIRE {SPIRE_VERSION} (first time only, about 5 minutes on 2 cores)")
    go("get", "-tool", *[f"github.com/spiffe/spire/cmd/{c}@v{SPIRE_VERSION}" for c in _CMDS])
    go("install", *[f"github.com/spiffe/spire/cmd/{c}" for c in _CMDS])
    if not _version_ok(bin_dir):
        raise LabError("the SPIRE build produced no working binaries", expected=f"{bin_dir}/spire-server",
                       found=str(sorted(p.name for p in bin_dir.glob("*"))) if bin_dir.exists() else "nothing")
    return bin_dir


def ensure_spire(log=print) -> Path:
    """The directory holding spire-server and spire-agent, building them if needed."""
    return find_spire() or build_spire(log)
