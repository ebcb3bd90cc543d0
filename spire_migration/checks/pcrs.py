"""PCR usage: which registrations depend on PCR values, and the values they expect.

The guide's "Document PCR usage" and "Update procedures" made concrete:

* :func:`pcr_uses` lists every PCR a node depends on: selectors that name a PCR
  in registration entries (the guide's Option 2, ``tpm:pcr:<index>:<value>``)
  and the PCRs the target description opts in with ``attestor.pcr_bindings``.
* :func:`record_expectations` reads those PCRs with tpm2-pytss and records the
  values in the journal (fact ``pcr_expectations``): the documented baseline.
* :func:`compare` tells, PCR by PCR, recorded value against current value.

Recording writes the journal, so it is an operator's act, never part of
``pytest -m validate``::

    python -m spire_migration.checks.pcrs record --target T [--pcr 0,7]
    python -m spire_migration.checks.pcrs show --target T

>>> parse_pcr_selector("tpm", "pcr:0:ab12")
(None, 0, 'ab12')
>>> parse_pcr_selector("tpm", "pcr:sha256:7:AB12")
('sha256', 7, 'ab12')
>>> parse_pcr_selector("docker", "label:a:b") is None
True
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from spire_migration.node import tpm
from spire_migration.errors import MigrationError
from spire_migration.records.journal import Journal
from spire_migration.node.spire import id_str
from spire_migration.config.target import Target

FACT = "pcr_expectations"
_SEL = re.compile(r"^pcr:(?:(sha1|sha256|sha384|sha512|sm3_256):)?(\d{1,2})(?::([0-9a-fA-F]*))?$")

#: What to do before and after an update that changes PCR values (hardening_5).
UPDATE_PROCEDURE = (
    "before an update that changes PCR values (firmware, bootloader, kernel, reboot into new measurements): "
    "list the dependent entries (this check's evidence); after it: read the new values "
    "(python -m spire_migration.checks.pcrs show), update each dependent entry's PCR selector "
    "(spire-server entry update -entryID <id> ...), then re-record the expectations "
    "(python -m spire_migration.checks.pcrs record --target T)")


@dataclass(frozen=True)
class PcrUse:
    """One dependency on one PCR."""

    index: int
    bank: str
    source: str                 # "entry <id> (<spiffe id>)" or "target attestor.pcr_bindings"
    entry_id: str | None = None
    spiffe_id: str | None = None
    selector_value: str | None = None   # the value an entry's selector embeds
    selector: str = ""


def parse_pcr_selector(kind: str, value: str) -> tuple[str | None, int, str | None] | None:
    """(bank or None, index, value or None) for a selector naming a PCR; None otherwise."""
    if not names_pcr(kind, value):
        return None
    m = _SEL.match(value)
    if not m:
        return None
    return m.group(1), int(m.group(2)), (m.group(3) or "").lower() or None


def names_pcr(kind: str, value: str) -> bool:
    """True for a selector with a ``pcr`` field (``tpm:pcr:...``, ``x:pcr0:...``), parsable or not.

    >>> names_pcr("tpm", "pcr:0:ab"), names_pcr("docker", "label:app:pcr-demo")
    (True, False)
    """
    fields = f"{kind}:{value}".lower().split(":")
    return any(f == "pcr" or re.fullmatch(r"pcr\d{1,2}", f) for f in fields[:2])


def pcr_uses(entries: Iterable[dict[str, Any]], target: Target) -> list[PcrUse]:
    """Every PCR dependency: PCR selectors of entries, and the target's pcr_bindings."""
    bank_default = target.attestor.pcr_bank
    uses: list[PcrUse] = []
    for e in entries:
        for s in e.get("selectors") or []:
            parsed = parse_pcr_selector(s["type"], s["value"])
            if parsed is None:
                continue
            bank, index, value = parsed
            uses.append(PcrUse(index, bank or bank_default,
                               f"entry {e.get('id')} ({id_str(e['spiffe_id'])})",
                               e.get("id"), id_str(e["spiffe_id"]), value, f"{s['type']}:{s['value']}"))
    for index in target.attestor.pcr_bindings:
        uses.append(PcrUse(index, bank_default, "target attestor.pcr_bindings"))
    return uses


def unparsable_pcr_selectors(entries: Iterable[dict[str, Any]]) -> list[str]:
    """Selectors that mention a PCR but do not say which PCR and value (cannot be planned for)."""
    bad = []
    for e in entries:
        for s in e.get("selectors") or []:
            if names_pcr(s["type"], s["value"]) and parse_pcr_selector(s["type"], s["value"]) is None:
                bad.append(f"{id_str(e['spiffe_id'])}: {s['type']}:{s['value']}")
    return bad


def recorded(journal: Journal | None) -> dict[str, dict[int, str]]:
    """The recorded expectations as {bank: {index: hex}} (empty without a journal)."""
    fact = (journal.fact(FACT) if journal else None) or {}
    return {bank: {int(i): v.lower() for i, v in values.items()}
            for bank, values in (fact.get("banks") or {}).items()}


def record_expectations(target: Target, journal: Journal, indices: Iterable[int] | None = None,
                        bank: str | None = None, entries: list[dict[str, Any]] | None = None,
                        note: str = "") -> dict[str, Any]:
    """Read PCR values with tpm2-pytss and record them in the journal; returns the fact.

    ``indices`` default: every PCR the entries and the target depend on.
    """
    bank = bank or target.attestor.pcr_bank
    if indices is None:
        indices = sorted({u.index for u in pcr_uses(entries or [], target) if u.bank == bank})
    indices = sorted(set(indices))
    if not indices:
        raise MigrationError("no PCR to record", expected="PCR indices (--pcr) or PCR-bound registrations "
                             "or attestor.pcr_bindings", found="none",
                             remedy="pass --pcr 0,7, or set attestor.pcr_bindings in the target")
    values = tpm.pcr_read(target.tpm, bank, indices)
    fact = journal.fact(FACT) or {"banks": {}, "history": []}
    fact.setdefault("banks", {}).setdefault(bank, {}).update({str(i): values[i] for i in indices})
    fact.setdefault("history", []).append({"at": datetime.now(timezone.utc).isoformat(), "bank": bank,
                                           "indices": indices, "note": note})
    journal.set_fact(FACT, fact)
    return fact


@dataclass(frozen=True)
class PcrFinding:
    index: int
    bank: str
    recorded: str | None
    current: str | None
    sources: tuple[str, ...]
    embedded: tuple[str, ...] = ()   # values entries' selectors embed

    @property
    def ok(self) -> bool:
        return (self.recorded is not None and self.current == self.recorded
                and all(v == self.current for v in self.embedded))

    def describe(self) -> str:
        text = (f"PCR {self.bank}:{self.index} recorded {self.recorded or 'NOT RECORDED'}, "
                f"current {self.current or 'unreadable'}")
        odd = [v for v in self.embedded if v != self.current]
        if odd:
            text += f", entry selector expects {', '.join(odd)}"
        return text + f" (used by {'; '.join(self.sources)})"


def compare(uses: list[PcrUse], recorded_values: dict[str, dict[int, str]],
            current: dict[str, dict[int, str]]) -> list[PcrFinding]:
    """One finding per (bank, index) used."""
    keys = sorted({(u.bank, u.index) for u in uses})
    out = []
    for bank, index in keys:
        mine = [u for u in uses if (u.bank, u.index) == (bank, index)]
        out.append(PcrFinding(index, bank, recorded_values.get(bank, {}).get(index),
                              current.get(bank, {}).get(index),
                              tuple(sorted({u.source for u in mine})),
                              tuple(sorted({u.selector_value for u in mine if u.selector_value}))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spire_migration.checks.pcrs",
                                     description="Record and show the PCR values a node's registrations expect.")
    parser.add_argument("cmd", choices=("record", "show"))
    parser.add_argument("--target", required=True)
    parser.add_argument("--pcr", default=None, help="comma-separated indices (default: the PCRs in use)")
    parser.add_argument("--bank", default=None)
    parser.add_argument("--note", default="", help="why (e.g. 'after firmware update 1.2')")
    args = parser.parse_args(argv)
    try:
        target = Target.load(args.target)
        from spire_migration.node.services import server_cli
        entries = server_cli(target).entries()
        indices = [int(x) for x in args.pcr.split(",")] if args.pcr else None
        if args.cmd == "record":
            journal = Journal(target.journal_root)
            with journal.lock():
                fact = record_expectations(target, journal, indices, args.bank, entries, args.note)
            print(json.dumps(fact["banks"], indent=2))
        else:
            uses = pcr_uses(entries, target)
            bank = args.bank or target.attestor.pcr_bank
            wanted = indices or sorted({u.index for u in uses}) or list(range(24))
            print(json.dumps({"bank": bank, "values": tpm.pcr_read(target.tpm, bank, wanted),
                              "recorded": recorded(Journal.existing(target.journal_root)).get(bank, {}),
                              "uses": [u.__dict__ for u in uses]}, indent=2))
    except MigrationError as exc:
        print(f"pcrs {args.cmd}: {exc}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
