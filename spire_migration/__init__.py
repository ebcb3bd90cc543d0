"""Perform and prove the SPIRE join-token (Phase 3) to TPM (Phase 4) migration.

The library is importable without pytest: the Gherkin step definitions in
``steps/`` are thin wrappers around it.
"""

__version__ = "0.1.0"
