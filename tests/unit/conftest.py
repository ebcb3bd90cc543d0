"""Fixtures of the unit tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


def trusted_base() -> Path:
    """A folder whose every ancestor only root (or this user) can write: /run as root, else ~/.cache."""
    base = Path("/run/spire-migration-tests") if os.geteuid() == 0 else \
        Path.home() / ".cache" / "spire-migration-tests"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base


@pytest.fixture
def trusted_tmp() -> Iterator[Path]:
    """A private temporary folder where a target description passes the ownership check."""
    path = Path(tempfile.mkdtemp(prefix="t-", dir=trusted_base()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
