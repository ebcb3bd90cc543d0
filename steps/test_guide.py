"""Binds the guide's features, in the guide's order, as pytest tests.

Run them with a phase marker: ``pytest -m validate --target T``,
``pytest -m migrate --target T``, ``pytest -m rollback --target T``.
"""

from pathlib import Path

from pytest_bdd import scenarios

FEATURES = Path(__file__).resolve().parent.parent / "features"

scenarios(
    FEATURES / "01_pre_migration.feature",
    FEATURES / "02_migration.feature",
    FEATURES / "06_rollback.feature",
    FEATURES / "07_gradual.feature",
    FEATURES / "08_common_issues.feature",
    FEATURES / "03_post_migration.feature",
    FEATURES / "04_hardening.feature",
    FEATURES / "05_audit.feature",
)
