"""The library's docstring examples are tests too: they show the safe way to call."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spire_migration

MODULES = sorted(m.name for m in pkgutil.walk_packages(spire_migration.__path__, "spire_migration."))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
