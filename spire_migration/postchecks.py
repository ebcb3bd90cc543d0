"""Old name of :mod:`spire_migration.postmigration`; removed once the step definitions use it."""

from .postmigration import *  # noqa: F401,F403
