"""One error hierarchy for the whole suite.

Every error carries what was *expected*, what was *found* and what to *do*
(the guide's resolution when it has one), so a failed step explains itself.

>>> err = ConfigError("agent.conf does not parse", expected="valid HCL",
...                   found="line 3: unexpected '}'", remedy="fix the file")
>>> print(err)
agent.conf does not parse
  expected: valid HCL
  found:    line 3: unexpected '}'
  do:       fix the file
"""

from __future__ import annotations


class MigrationError(Exception):
    """Base of every error the suite raises on purpose."""

    def __init__(self, message: str, *, expected: str | None = None,
                 found: str | None = None, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.found = found
        self.remedy = remedy

    def __str__(self) -> str:
        from spire_migration.redact import redact

        lines = [self.message]
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.remedy is not None:
            lines.append(f"  do:       {self.remedy}")
        return redact("\n".join(lines))


class TargetError(MigrationError):
    """The target description is missing or invalid."""


class ConfigError(MigrationError):
    """A SPIRE config file is missing, malformed, or not in the expected phase."""


class TPMError(MigrationError):
    """The TPM is missing, unreachable, or not what SPIRE needs."""


class SpireError(MigrationError):
    """The SPIRE CLI failed, or answered something unexpected."""


class ProcessError(MigrationError):
    """A SPIRE process could not be started, found or stopped."""


class JournalError(MigrationError):
    """The journal, a backup or the lock is missing, altered or held."""


class FileError(MigrationError):
    """A file cannot be written safely (a planted link, a folder the suite may not write)."""


class WorkloadError(MigrationError):
    """The workload runtime (docker, kubernetes) failed or is unreachable."""
