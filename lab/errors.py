"""The lab's error: one more branch of the suite's hierarchy (expected / found / remedy)."""

from __future__ import annotations

from spire_migration.errors import MigrationError


class LabError(MigrationError):
    """The swtpm lab could not be provisioned or torn down."""
