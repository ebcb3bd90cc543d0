"""The one place the Kubernetes lab writes files (configs, PKI, kubeconfigs, state).

Every write of ``lab/k8s`` goes through :func:`write_file`, so the project's single
writer can replace it in one line.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write *data* to *path* (parents created) with *mode* from the first byte on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(raw)
