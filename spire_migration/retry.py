"""Poll with a deadline instead of sleeping a fixed time.

>>> poll(lambda: 42, timeout=1, what="the answer")
42
>>> poll(lambda: None, timeout=0.05, what="nothing", interval=0.01)
Traceback (most recent call last):
...
spire_migration.errors.MigrationError: timed out after 0.05 s waiting for nothing
  found:    last result: None
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from .errors import MigrationError

T = TypeVar("T")


def poll(check: Callable[[], T], *, timeout: float, what: str = "a condition",
         interval: float = 0.1, max_interval: float = 1.0,
         error: type[MigrationError] = MigrationError,
         raise_on_timeout: bool = True) -> T:
    """Call ``check`` until it returns something truthy or ``timeout`` passes.

    Exceptions from ``check`` count as "not yet"; the last one is named in the
    error. Intervals grow from ``interval`` to ``max_interval``.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except MigrationError as exc:
            last = exc.message
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            if not raise_on_timeout:
                return None  # type: ignore[return-value]
            raise error(f"timed out after {timeout:g} s waiting for {what}",
                        found=f"last result: {last}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max_interval)
