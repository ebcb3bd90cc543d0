"""Old name of :mod:`spire_migration.premigration` (the kernel is :mod:`spire_migration.verdict`).

Kept importable while the step definitions move to the new names; removed once they have.
"""

from .premigration import *  # noqa: F401,F403
from .verdict import CheckResult, check, check as _result, guarded  # noqa: F401
