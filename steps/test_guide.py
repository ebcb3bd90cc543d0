"""Binds the guide's features as pytest tests, in the guide's order (fixtures/ordering.py).

Run them with the entry point: ``spire-migration validate --target T``,
``spire-migration migrate --target T``, ``spire-migration rollback --target T``.
"""

from pytest_bdd import scenarios

from fixtures.ordering import feature_paths

scenarios(*feature_paths())
