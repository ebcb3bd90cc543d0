"""Filters of fleet/migrate.yml: the waves ``serial`` makes, computed as ansible-playbook does."""

from __future__ import annotations

from ansible.utils.helpers import pct_to_int


def spire_batches(hosts: list[str], waves: list) -> list[list[str]]:
    """``hosts`` split like ``serial: waves`` splits a play's hosts (playbook_executor's
    ``_get_serialized_batches``: sizes from the list, its last one repeated, "N%" of all hosts,
    at least 1; a size of 0 or less takes every host left).

    >>> spire_batches(["n1", "n2", "n3"], [1, "25%", "100%"])
    [['n1'], ['n2'], ['n3']]
    """
    left, out, i = list(hosts), [], 0
    waves = list(waves) or [-1]
    while left:
        size = pct_to_int(waves[i], len(hosts))
        if size <= 0:
            out.append(left)
            break
        out.append(left[:size])
        left = left[size:]
        i = min(i + 1, len(waves) - 1)
    return out


def spire_wave_of(host: str, batches: list[list[str]]) -> int:
    """The 1-based wave of ``host`` in ``batches`` (0 when it is in none)."""
    return next((i for i, batch in enumerate(batches, 1) if host in batch), 0)


class FilterModule:
    def filters(self) -> dict:
        return {"spire_batches": spire_batches, "spire_wave_of": spire_wave_of}
