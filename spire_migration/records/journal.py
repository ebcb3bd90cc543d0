"""The journal: what a run did, the backups it took, and the lock.

Layout under ``<journal dir>/<node>/`` (0700, files 0600)::

    journal.json        steps done, changes made, backups with hashes (no secrets)
    lock                flock held by the run in progress
    backups/            server.conf, agent.conf, entries.json, agent-data.json ...
    runs/               one summary JSON per run

Backups are taken once: a second run never overwrites the Phase 3 copy with a
Phase 4 file. Every write goes through :func:`~spire_migration.fileio.write_file`
(atomic, never through a link). A run takes the lock, then reads the journal:
what another run recorded before is never lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from spire_migration.errors import JournalError
from spire_migration.fileio import write_file
from spire_migration.records.locks import FileLock
from spire_migration.fsperm import check_private_dir
from spire_migration.redact import redact, redact_obj


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Journal:
    """One node's journal.

    >>> import tempfile
    >>> j = Journal(Path(tempfile.mkdtemp()) / "node-1")
    >>> j.done("guide_step_3")
    False
    >>> j.complete("guide_step_3", ["backed up server.conf"])
    >>> j.done("guide_step_3"), j.data["steps"]["guide_step_3"]["changes"]
    (True, ['backed up server.conf'])
    """

    def __init__(self, root: Path, create: bool = True) -> None:
        self.root = Path(root)
        self.backups = self.root / "backups"
        self.path = self.root / "journal.json"
        check_private_dir(self.root, JournalError)  # never keep a folder someone else owns or can enter
        if create:
            for d in (self.root, self.backups, self.root / "runs"):
                if not d.exists():
                    d.mkdir(parents=True)
                    os.chmod(d, 0o700)
        self._lock = FileLock(self.root / "lock", "the lock on this node",
                              "wait for it to finish; never run two migrations at once")
        self.data: dict[str, Any] = self._read()

    @classmethod
    def existing(cls, root: Path) -> "Journal | None":
        """The journal if one exists, read-only use; never creates anything."""
        return cls(root, create=False) if (Path(root) / "journal.json").exists() else None

    @classmethod
    def from_text(cls, root: Path, text: str) -> "Journal":
        """A journal for reading only, from its journal.json text read elsewhere (e.g. through a host)."""
        journal = cls(root, create=False)
        try:
            journal.data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JournalError(f"journal {journal.path} is corrupt", expected="JSON", found=str(exc),
                               remedy="restore it from backups/ or remove the node's journal dir") from exc
        return journal

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": 1, "steps": {}, "backups": {}, "facts": {}, "history": []}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise JournalError(f"journal {self.path} is corrupt", expected="JSON",
                               found=str(exc), remedy="restore it from backups/ or remove the node's journal dir") from exc

    def save(self) -> None:
        write_file(self.path, json.dumps(redact_obj(self.data), indent=2, sort_keys=True) + "\n")

    # -- steps ----------------------------------------------------------------
    def done(self, step: str) -> bool:
        return self.data["steps"].get(step, {}).get("status") == "done"

    def complete(self, step: str, changes: list[str]) -> None:
        self.data["steps"][step] = {"status": "done", "at": time.time(),
                                    "changes": [redact(c) for c in changes]}
        self.data["history"].append({"step": step, "at": time.time(), "changes": len(changes)})
        self.save()

    def reset(self, *steps: str) -> None:
        for step in steps:
            self.data["steps"].pop(step, None)
        self.save()

    # -- facts (agent IDs and such; redacted when written) ---------------------
    def fact(self, key: str, default: Any = None) -> Any:
        return self.data["facts"].get(key, default)

    def set_fact(self, key: str, value: Any) -> None:
        self.data["facts"][key] = value
        self.save()

    # -- backups --------------------------------------------------------------
    def backup_file(self, name: str, src: Path) -> tuple[Path, bool]:
        """Copy ``src`` to backups/<name> once; returns (path, created_now)."""
        dest = self.backups / name
        if name in self.data["backups"] and dest.exists():
            self.verify_backup(name)
            return dest, False
        write_file(dest, Path(src).read_bytes())
        self._record_backup(name, dest, str(src))
        return dest, True

    def backup_data(self, name: str, data: bytes | str) -> tuple[Path, bool]:
        """Store generated data (e.g. the exported entries) in backups/<name> once."""
        dest = self.backups / name
        if name in self.data["backups"] and dest.exists():
            self.verify_backup(name)
            return dest, False
        write_file(dest, data)
        self._record_backup(name, dest, None)
        return dest, True

    def _record_backup(self, name: str, dest: Path, source: str | None) -> None:
        self.data["backups"][name] = {"sha256": sha256_file(dest), "source": source,
                                      "at": time.time()}
        self.save()

    def has_backup(self, name: str) -> bool:
        return name in self.data["backups"] and (self.backups / name).exists()

    def verify_backup(self, name: str) -> Path:
        """The backup's path, after checking it exists and its hash is unchanged."""
        rec = self.data["backups"].get(name)
        path = self.backups / name
        if rec is None or not path.exists():
            raise JournalError(f"backup {name} is missing", expected=f"{path} recorded in the journal",
                               found="no such backup" if rec is None else "file deleted",
                               remedy="restore the file by hand; the suite will not guess its content")
        actual = sha256_file(path)
        if actual != rec["sha256"]:
            raise JournalError(f"backup {name} was altered", expected=f"sha256 {rec['sha256']}",
                               found=f"sha256 {actual}",
                               remedy="find out who changed it; the suite will not restore an altered backup")
        return path

    # -- lock -----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the node's lock, then read the journal; a second run gets a JournalError at once."""
        first = not self._lock.held
        with self._lock:
            if first:  # what a run recorded before we held the lock is on disk, not in self.data
                self.data = self._read()
            yield
