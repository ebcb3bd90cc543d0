"""``pytest`` from a checkout: the same suite as ``spire-migration`` (see fixtures/suite.py).

Prefer the entry point: ``spire-migration validate --target T``. From a
checkout, write the target with ``=`` (``pytest -m validate --target=T``):
with a space pytest would look for its config next to T (it stops, exit 4).
"""

pytest_plugins = ["fixtures.suite"]
