"""Poll with a deadline instead of sleeping a fixed time.

>>> poll(lambda: 42, timeout=1, what="the answer")
42
>>> poll(lambda: None, timeout=0.05, what="nothing", interval=0.01)
Traceback (most recent call last):
...
spire_migration.errors.MigrationError: timed out after 0.05 s waiting for nothing
  found:    last result: None

Whoever shows progress subscribes to the waits (the library stays pytest-free):

>>> seen = []
>>> stop = observe(seen.append)
>>> poll(iter([None, 1]).__next__, timeout=1, what="a second try", interval=0.01)
1
>>> stop()
>>> [(w.what, w.state, w.timeout) for w in seen]
[('a second try', 'waiting', 1), ('a second try', 'done', 1)]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from spire_migration.errors import MigrationError

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """One moment of a wait: ``state`` is waiting (not yet), done or timeout."""

    what: str
    elapsed: float
    timeout: float
    state: str


_observers: list[Callable[[Wait], None]] = []


def observe(callback: Callable[[Wait], None]) -> Callable[[], None]:
    """Call ``callback`` with every :class:`Wait` of :func:`poll`; returns the unsubscribe."""
    _observers.append(callback)
    return lambda: _observers.remove(callback) if callback in _observers else None


def _notify(what: str, started: float, timeout: float, state: str) -> None:
    wait = Wait(what, time.monotonic() - started, timeout, state)
    for callback in list(_observers):
        try:
            callback(wait)
        except Exception:  # noqa: BLE001 - showing progress must never break a wait
            pass


def poll(check: Callable[[], T], *, timeout: float, what: str = "a condition",
         interval: float = 0.1, max_interval: float = 1.0,
         error: type[MigrationError] = MigrationError,
         raise_on_timeout: bool = True) -> T:
    """Call ``check`` until it returns something truthy or ``timeout`` passes.

    Exceptions from ``check`` count as "not yet"; the last one is named in the
    error. Intervals grow from ``interval`` to ``max_interval``. Observers
    (:func:`observe`) hear of the wait once the first check says "not yet".
    """
    started = time.monotonic()
    deadline = started + timeout
    last: object = None
    waited = False
    while True:
        try:
            result = check()
            if result:
                if waited:
                    _notify(what, started, timeout, "done")
                return result
            last = result
        except MigrationError as exc:
            last = exc.message
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        waited = True
        if time.monotonic() >= deadline:
            _notify(what, started, timeout, "timeout")
            if not raise_on_timeout:
                return None  # type: ignore[return-value]
            raise error(f"timed out after {timeout:g} s waiting for {what}",
                        found=f"last result: {last}")
        _notify(what, started, timeout, "waiting")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max_interval)
