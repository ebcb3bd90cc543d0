"""The one place the Kubernetes lab writes files (configs, PKI, kubeconfigs, state): through the
project's single writer (:func:`spire_migration.fileio.write_file`: atomic, no links followed)."""

from __future__ import annotations

from pathlib import Path

from spire_migration import fileio


def write_file(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write *data* to *path* (parents created) with *mode*."""
    fileio.write_file(path, data, mode=mode)
