"""The SPIRE CLIs, driven with ``-output json`` (never by scraping text).

Entries are handled as plain dicts in the API's JSON shape (``spiffe_id`` and
``parent_id`` as ``{"trust_domain", "path"}``); :func:`id_str` turns those into
``spiffe://`` strings. Batch create and delete read every result's status,
because the CLI exits 0 even when a result failed.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from spire_migration.errors import SpireError
from spire_migration.redact import redact
from spire_migration.retry import poll
from spire_migration.secret import Secret

#: Fields that make up an entry's content (what must survive re-parenting).
CONTENT_FIELDS = ("spiffe_id", "selectors", "x509_svid_ttl", "jwt_svid_ttl", "dns_names",
                  "hint", "federates_with", "admin", "downstream", "expires_at", "store_svid")

BATCH = 500
#: Batch calls in flight at once. The server serves them concurrently: on PostgreSQL their
#: commits overlap (one transaction per entry); sqlite serialises its writes, so there it
#: changes little. Measured in benchmarks/bench_migration.py (docs/benchmark-rereg.md).
WORKERS = 4
#: The smallest chunk worth a CLI call of its own when spreading a batch over the workers.
MIN_CHUNK = 100


def id_str(spiffe_id: dict[str, str] | str) -> str:
    """``{"trust_domain": "example.org", "path": "/x"}`` -> ``spiffe://example.org/x``."""
    if isinstance(spiffe_id, str):
        return spiffe_id
    return f"spiffe://{spiffe_id['trust_domain']}{spiffe_id.get('path', '')}"


def selector_strs(item: dict[str, Any]) -> list[str]:
    """``[{"type": "docker", "value": "label:a:b"}]`` -> ``["docker:label:a:b"]`` (sorted)."""
    return sorted(f"{s['type']}:{s['value']}" for s in item.get("selectors") or [])


def entry_content(entry: dict[str, Any]) -> dict[str, Any]:
    """The parts of an entry that a re-parenting must keep, normalised for comparison."""
    out: dict[str, Any] = {}
    for key in CONTENT_FIELDS:
        value = entry.get(key)
        if key == "spiffe_id":
            value = id_str(value)
        elif key == "selectors":
            value = selector_strs(entry)
        elif key in ("dns_names", "federates_with"):
            value = sorted(value or [])
        elif key in ("x509_svid_ttl", "jwt_svid_ttl", "expires_at"):
            value = int(value or 0)
        elif key in ("admin", "downstream", "store_svid"):
            value = bool(value)
        else:
            value = value or ""
        out[key] = value
    return out


def to_create_data(entry: dict[str, Any], parent_id: str) -> dict[str, Any]:
    """An entry in ``entry create -data`` form (common.RegistrationEntry), new parent."""
    c = entry_content(entry)
    data: dict[str, Any] = {
        "spiffe_id": c["spiffe_id"],
        "parent_id": parent_id,
        "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in c["selectors"]],
        "x509_svid_ttl": c["x509_svid_ttl"],
        "jwt_svid_ttl": c["jwt_svid_ttl"],
        "dns_names": c["dns_names"],
        "federates_with": c["federates_with"],
        "admin": c["admin"],
        "downstream": c["downstream"],
        "entryExpiry": c["expires_at"],
        "store_svid": c["store_svid"],
        "hint": c["hint"],
    }
    return {k: v for k, v in data.items() if v not in ("", [], 0, False)}


@dataclass
class BatchResult:
    """What one batch call did: the entries that succeeded and the failures by message."""

    ok: list[dict[str, Any]]
    failed: list[tuple[str, str]]  # (identifier, message)


class CliRunner:
    """Where the ``spire-server`` CLI runs: here, as a child process (the default)."""

    name = "local"
    #: True when the CLI runs on another host: files written here are not there.
    remote = False

    def run(self, argv: list[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess:
        """Run ``argv``; raises FileNotFoundError / subprocess.TimeoutExpired like subprocess."""
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)

    def exists(self, path: Path) -> bool:
        return path.exists()


class HostRunner(CliRunner):
    """The CLI run on a testinfra host (the server host of a fleet, read from a controller).

    The server's admin socket stays where it is (on its host, never forwarded);
    only the CLI's arguments travel, and none of them is a secret: filters by a
    join_token agent's ID are applied here (:meth:`SpireServer.entries`). Input on
    stdin and batch files are not sent (a remote run reads, it does not re-register).
    """

    remote = True

    def __init__(self, host: Any) -> None:
        self.host = host
        self.name = host.backend.get_pytest_id()

    def run(self, argv: list[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess:
        if stdin is not None:
            raise SpireError(f"spire-server input through {self.name}", expected="a CLI call without input",
                             found="input on stdin", remedy="run this step on the server host itself")
        out = self.host.run(f"timeout {math.ceil(timeout)} {shlex.join(argv)}")
        if out.rc == 124:
            raise subprocess.TimeoutExpired(argv, timeout)
        if out.rc == 127:
            raise FileNotFoundError(argv[0])
        return subprocess.CompletedProcess(argv, out.rc, out.stdout, out.stderr)

    def exists(self, path: Path) -> bool:
        return self.host.run(f"test -e {shlex.quote(str(path))}").rc == 0


LOCAL = CliRunner()


class SpireServer:
    """``spire-server`` against one server socket, run here or through a :class:`HostRunner`.

    >>> srv = SpireServer(Path("/opt/spire/bin/spire-server"), Path("/tmp/spire-server/private/api.sock"))
    >>> srv.socket.name, srv.runner.name
    ('api.sock', 'local')
    """

    def __init__(self, binary: Path, socket: Path, timeout: float = 60.0,
                 runner: CliRunner | None = None) -> None:
        self.binary = Path(binary)
        self.socket = Path(socket)
        self.timeout = timeout
        self.runner = runner or LOCAL

    # -- plumbing -------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        """The command line of ``spire-server ARGS`` (a subclass may run it elsewhere)."""
        return [str(self.binary), *args, "-socketPath", str(self.socket)]

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = self.argv(*args)
        try:
            proc = self.runner.run(argv, stdin, self.timeout)
        except FileNotFoundError as exc:
            raise SpireError("spire-server binary not found", expected=f"{self.binary} on {self.runner.name}",
                             found="no such file", remedy="set bin_dir in the target description") from exc
        except subprocess.TimeoutExpired as exc:
            raise SpireError(f"spire-server {args[0]} timed out", expected=f"an answer within {self.timeout:g} s",
                             found="no answer", remedy="check the server log") from exc
        if check and proc.returncode != 0:
            raise SpireError(f"spire-server {' '.join(args[:2])} failed",
                             expected="exit code 0",
                             found=redact(f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"),
                             remedy=f"is the server running and listening on {self.socket} "
                                    f"({self.runner.name})?")
        return proc

    def json(self, *args: str, stdin: str | None = None) -> Any:
        proc = self.run(*args, "-output", "json", stdin=stdin)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise SpireError(f"spire-server {' '.join(args[:2])} did not print JSON",
                             expected="JSON", found=redact(proc.stdout[:200])) from exc

    # -- health ---------------------------------------------------------------
    def healthy(self) -> bool:
        if not self.runner.exists(self.socket):
            return False
        try:
            return self.run("healthcheck", check=False).returncode == 0
        except SpireError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        poll(self.healthy, timeout=timeout, what=f"spire-server healthcheck on {self.socket}",
             error=SpireError)

    # -- agents ---------------------------------------------------------------
    def agents(self) -> list[dict[str, Any]]:
        return self.json("agent", "list").get("agents") or []

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        return next((a for a in self.agents() if id_str(a["id"]) == agent_id), None)

    def evict(self, agent_id: str) -> None:
        self.run("agent", "evict", "-spiffeID", agent_id)

    # -- tokens ---------------------------------------------------------------
    def token_generate(self, spiffe_id: str | None = None, ttl: int = 120) -> Secret:
        """A fresh join token (a :class:`Secret`), valid ``ttl`` seconds: keep it short, it is unspent."""
        args = ["token", "generate", "-ttl", str(ttl)]
        if spiffe_id:
            args += ["-spiffeID", spiffe_id]
        return Secret(self.json(*args)["value"])

    def bundle_pem(self) -> str:
        return self.run("bundle", "show", "-format", "pem").stdout

    # -- entries --------------------------------------------------------------
    def entries(self, **filters: str) -> list[dict[str, Any]]:
        """``entry show``; ``filters`` are its flags (``parentID``, ``spiffeID``, ``selector``),
        applied by the server. Without a filter this is the whole table.

        A join_token agent's ID carries its token: such a filter never goes on a command line
        (``ps`` shows it to every local user); the table is read and filtered here instead.
        """
        if any(JOIN_TOKEN_PATH in value for value in filters.values()):
            return [e for e in self.json("entry", "show").get("entries") or [] if _matches(e, filters)]
        args = ["entry", "show"]
        for key, value in filters.items():
            args += [f"-{key}", value]
        return self.json(*args).get("entries") or []

    def create_entries(self, entries: list[dict[str, Any]]) -> BatchResult:
        """Create many entries (create-data form) in batches; read each result's status."""
        return self._batch(entries, "entries", ("entry", "create", "-data"), lambda e: e["spiffe_id"])

    def delete_entries(self, entry_ids: list[str]) -> BatchResult:
        """Delete entries by ID in batches; an entry already gone (NotFound) counts as deleted."""
        return self._batch(entry_ids, "ids", ("entry", "delete", "-file"), str, ok_codes=(0, 5))

    def update_entries(self, entries: list[dict[str, Any]]) -> BatchResult:
        """Update entries (create-data form plus ``entry_id``)."""
        return self._batch(entries, "entries", ("entry", "update", "-data"), lambda e: e.get("entry_id", "?"))

    def _batch(self, items: list[Any], key: str, args: tuple[str, ...], name: Callable[[Any], str],
               ok_codes: tuple[int, ...] = (0,)) -> BatchResult:
        """Every chunk in its own call, up to :data:`WORKERS` at once; results in input order.
        A call that fails stops the chunks not yet started; a missing result is a failure."""
        ok: list[dict[str, Any]] = []
        failed: list[tuple[str, str]] = []
        chunks = list(_chunks(items, chunk_size(len(items))))
        stop = threading.Event()

        def call(chunk: list[Any]) -> Any:
            if stop.is_set():
                return None       # an earlier call failed: never started
            try:
                return self._with_file({key: chunk}, *args)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(chunks)))) as pool:
            outs = [c.result() for c in [pool.submit(call, chunk) for chunk in chunks]]
        for chunk, out in zip(chunks, outs):
            results = out.get("results") or []
            for i, wanted in enumerate(chunk):
                status = (results[i].get("status") or {}) if i < len(results) else \
                    {"code": -1, "message": "no result returned for it"}
                if int(status.get("code", 0)) in ok_codes:
                    ok.append(results[i].get("entry") or {"id": wanted})
                else:
                    failed.append((name(wanted), status.get("message", "unknown error")))
        return BatchResult(ok, failed)

    def _with_file(self, payload: dict[str, Any], *args: str) -> Any:
        if self.runner.remote:
            raise SpireError(f"spire-server {' '.join(args[:2])} through {self.runner.name}",
                             expected="batch files on the server's own host", found="a remote server",
                             remedy="re-register on the server host (fleet/migrate.yml delegates it there)")
        folder = tempfile.mkdtemp(prefix="spire-batch-")   # 0700: entries may name an unspent token's agent
        path = os.path.join(folder, "batch.json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh)
            return self.json(*args, path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class SpireAgent:
    """``spire-agent`` against one Workload API socket."""

    def __init__(self, binary: Path, socket: Path, timeout: float = 30.0) -> None:
        self.binary = Path(binary)
        self.socket = Path(socket)
        self.timeout = timeout

    def healthy(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            proc = subprocess.run([str(self.binary), "healthcheck", "-socketPath", str(self.socket)],
                                  capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0


def chunk_size(n: int) -> int:
    """Items per call: enough calls to keep :data:`WORKERS` busy, at most :data:`BATCH` each,
    and no call smaller than :data:`MIN_CHUNK` (a handful of entries is one call).

    >>> [chunk_size(n) for n in (10, 400, 1000, 20000)]
    [100, 100, 250, 500]
    """
    return min(BATCH, max(MIN_CHUNK, -(-n // WORKERS)))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


JOIN_TOKEN_PATH = "/spire/agent/join_token/"


def _matches(entry: dict[str, Any], filters: dict[str, str]) -> bool:
    """``entry show``'s filters applied to one entry (``selector``: the entry has that selector)."""
    for key, value in filters.items():
        if key == "parentID" and id_str(entry.get("parent_id")) != value:
            return False
        if key == "spiffeID" and id_str(entry.get("spiffe_id")) != value:
            return False
        if key == "selector" and value not in selector_strs(entry):
            return False
    return True
