#!/usr/bin/env python3
"""The guide's Python application: an mTLS server and client on SPIFFE X.509 SVIDs.

Modes (``python mtls_app.py MODE [options]``):

``server``  listen with spiffetls mTLS on ADDR, authorize the client's SPIFFE ID,
            answer each connection.
``client``  dial ADDR, authorize the server's SPIFFE ID, exchange a message;
            repeat every ``--interval`` seconds (default 5) so the log keeps
            showing fresh results.
``demo``    server and client in one process (the Kubernetes pod runs this).
``check``   one shot: fetch the X.509 SVID (timed), dial ADDR once, print ONE
            JSON line ``{"spiffe_id", "fetch_ms", "verified", "peer_id", "error"}``
            on stdout (logs go to stderr) and exit 0 when verified, else 1.

Environment:

``SPIFFE_ENDPOINT_SOCKET``  the agent's Workload API, ``unix:///...`` (required)
``PEER_SPIFFE_ID``          the SPIFFE ID to authorize on the other side
                            (default: this workload's own ID: both sides are
                            registered as the same workload)
``MTLS_ADDR``               host:port (default 127.0.0.1:9443)
``CLIENT_INTERVAL``         seconds between client exchanges (default 5)
``SPIRE_AGENT_ID``          the agent's SPIFFE ID, when the deployer knows it:
                            the Workload API does not expose it

Success lines contain ``Successfully fetched SVIDs`` and ``VERIFIED``. Key
material is never logged: only SPIFFE IDs, serial-free expiry times and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from datetime import datetime, timezone

from cryptography import x509
from OpenSSL import SSL
from spiffe import SpiffeId, WorkloadApiClient, X509Source
from spiffetls import ListenOptions, ServerTlsMode, create_ssl_context, listen
from spiffetls.tlsconfig.authorize import authorize_id

DEFAULT_ADDR = "127.0.0.1:9443"
_OUT = sys.stdout


def log(msg: str) -> None:
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{ts} {msg}", file=_OUT, flush=True)


def agent_attestation() -> str:
    agent_id = os.environ.get("SPIRE_AGENT_ID", "").strip()
    if not agent_id:
        return "Agent attestation: unknown (the Workload API does not expose the agent ID)"
    marker = "/spire/agent/"
    kind = agent_id.split(marker, 1)[1].split("/", 1)[0] if marker in agent_id else "unknown"
    return f"Agent attestation: {kind or 'unknown'} ({agent_id})"


def socket_path() -> str:
    path = os.environ.get("SPIFFE_ENDPOINT_SOCKET", "")
    if not path.startswith("unix://"):
        raise SystemExit(f"SPIFFE_ENDPOINT_SOCKET must be unix:///path/to/api.sock, got {path!r}")
    return path


def peer_spiffe_id(cert) -> str:
    """The SPIFFE ID (URI SAN) of a pyOpenSSL or cryptography certificate."""
    if cert is None:
        return ""
    if not isinstance(cert, x509.Certificate):
        cert = cert.to_cryptography()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    return uris[0] if uris else ""


def _set_io_timeout(sock: socket.socket, seconds: float) -> None:
    # SO_RCVTIMEO/SO_SNDTIMEO keep the socket blocking (pyOpenSSL wants that).
    tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def open_source(stop: threading.Event, timeout: float = 10.0, retry_every: float = 1.0) -> X509Source:
    """An X509Source, once the agent issues an SVID (the entry may not be synced yet).

    Polls with single fetches (the agent answers "no identity issued" at once), so
    the SVID is picked up within about *retry_every* of the agent's next entry sync.
    """
    client = WorkloadApiClient(socket_path())
    last_error, last_logged = "", 0.0
    try:
        while True:
            started = time.monotonic()
            try:
                svid = client.fetch_x509_svid(timeout=timeout)
                break
            except Exception as exc:  # noqa: BLE001 - any Workload API failure: log and retry
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error or time.monotonic() - last_logged > 30:
                    log(f"Waiting for an SVID from {socket_path()}: {error}")
                    last_error, last_logged = error, time.monotonic()
                if stop.wait(retry_every):
                    raise SystemExit(0)
    finally:
        client.close()
    ms = (time.monotonic() - started) * 1000
    log(f"Successfully fetched SVIDs: spiffe_id={svid.spiffe_id} fetch_ms={ms:.1f} "
        f"expires={svid.leaf.not_valid_after_utc.isoformat()}")
    return X509Source(socket_path=socket_path(), timeout_in_seconds=timeout)


def current_svid(source: X509Source):
    """The source's default SVID (``X509Source.svid`` is deprecated in py-spiffe 0.3)."""
    getter = getattr(source, "get_x509_context", None)
    return getter().default_svid if getter else source.svid


def expected_peer(source: X509Source, cli_peer: str | None) -> str:
    return cli_peer or os.environ.get("PEER_SPIFFE_ID") or str(current_svid(source).spiffe_id)


def serve(source: X509Source, addr: str, peer: str, stop: threading.Event,
          ready: threading.Event | None = None) -> None:
    listener = listen(addr, source, ListenOptions(tls_mode=ServerTlsMode.MTLS,
                                                  authorize_fn=authorize_id(SpiffeId(peer))))
    me = current_svid(source).spiffe_id
    log(f"mTLS server listening on {addr} as {me}; authorizing {peer}")
    listener.settimeout(0.5)  # delegated to the listening socket: accept() wakes to see `stop`
    if ready is not None:
        ready.set()
    while not stop.is_set():
        try:
            conn, remote = listener.accept()
        except (socket.timeout, TimeoutError, SSL.WantReadError):
            continue
        except OSError as exc:
            if stop.is_set():
                break
            log(f"accept failed: {exc}")
            continue
        threading.Thread(target=_answer, args=(conn, remote, me), daemon=True).start()
    listener.close()


def _answer(conn: SSL.Connection, remote, me) -> None:
    try:
        conn.settimeout(None)
        _set_io_timeout(conn, 10)
        conn.do_handshake()
        peer = peer_spiffe_id(conn.get_peer_certificate())
        data = conn.recv(4096).decode(errors="replace").strip()
        conn.sendall(f"hello {peer}, this is {me}; you said: {data}\n".encode())
        log(f"VERIFIED client {peer} from {remote[0]}:{remote[1]}: received {data!r}")
    except Exception as exc:  # noqa: BLE001 - a bad client must not stop the server
        log(f"REJECTED connection from {remote[0]}:{remote[1]}: {type(exc).__name__}: {exc}")
    finally:
        try:
            conn.shutdown()
        except Exception:  # noqa: BLE001
            pass
        conn.close()


class Dialer:
    """One SSL context (subscribed once to SVID rotation), one connection per exchange."""

    def __init__(self, source: X509Source, addr: str, peer: str) -> None:
        self.addr, self.peer = addr, peer
        host, port = addr.rsplit(":", 1)
        self.target = (host, int(port))
        self.ctx = create_ssl_context(SSL.TLS_CLIENT_METHOD, source, authorize_id(SpiffeId(peer)),
                                      SSL.VERIFY_PEER)

    def exchange(self, message: str, timeout: float = 10.0) -> tuple[str, str]:
        sock = socket.create_connection(self.target, timeout=timeout)
        sock.settimeout(None)
        _set_io_timeout(sock, timeout)
        conn = SSL.Connection(self.ctx, sock)
        try:
            conn.set_connect_state()
            conn.do_handshake()
            peer = peer_spiffe_id(conn.get_peer_certificate())
            conn.sendall(message.encode() + b"\n")
            reply = conn.recv(4096).decode(errors="replace").strip()
            return peer, reply
        finally:
            try:
                conn.shutdown()
            except Exception:  # noqa: BLE001
                pass
            conn.close()


def _describe(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SSL.Error) and "certificate verify failed" in str(exc):
        text += " (the peer's SPIFFE ID is not the authorized one, or its bundle is unknown)"
    return text


def run_client(source: X509Source, addr: str, peer: str, interval: float, stop: threading.Event) -> None:
    dialer = Dialer(source, addr, peer)
    log(f"mTLS client dialing {addr} as {current_svid(source).spiffe_id}; authorizing {peer}; every {interval:g}s")
    n = 0
    while not stop.is_set():
        n += 1
        try:
            got, reply = dialer.exchange(f"ping {n} from {current_svid(source).spiffe_id}")
            log(f"VERIFIED server {got} at {addr}: exchange {n} ok, reply {reply!r}")
        except Exception as exc:  # noqa: BLE001 - keep looping: the log must show fresh results
            log(f"FAILED exchange {n} with {addr}: {_describe(exc)}")
        stop.wait(interval)


def run_check(addr: str, cli_peer: str | None, timeout: float) -> int:
    result = {"spiffe_id": None, "fetch_ms": None, "verified": False, "peer_id": None, "error": None}
    client = source = None
    try:
        client = WorkloadApiClient(socket_path())
        started = time.monotonic()
        svid = client.fetch_x509_svid(timeout=timeout)
        result["fetch_ms"] = round((time.monotonic() - started) * 1000, 2)
        result["spiffe_id"] = str(svid.spiffe_id)
        log(f"Successfully fetched SVIDs: spiffe_id={svid.spiffe_id} fetch_ms={result['fetch_ms']}")
        source = X509Source(workload_api_client=client, timeout_in_seconds=timeout)
        peer = expected_peer(source, cli_peer)
        got, _ = Dialer(source, addr, peer).exchange("check", timeout=timeout)
        result["peer_id"], result["verified"] = got, got == peer
        if result["verified"]:
            log(f"VERIFIED server {got} at {addr}")
        else:
            result["error"] = f"peer {got!r} is not the authorized {peer!r}"
    except BaseException as exc:  # noqa: BLE001 - the JSON line carries any failure
        result["error"] = _describe(exc) if isinstance(exc, Exception) else repr(exc)
    finally:
        for closable in (source, client):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # noqa: BLE001
                pass
    print(json.dumps(result), file=sys.stdout, flush=True)
    return 0 if result["verified"] else 1


def main(argv: list[str] | None = None) -> int:
    global _OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("server", "client", "demo", "check"))
    parser.add_argument("--addr", default=os.environ.get("MTLS_ADDR", DEFAULT_ADDR))
    parser.add_argument("--peer-id", default=None, help="SPIFFE ID to authorize (env PEER_SPIFFE_ID)")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("CLIENT_INTERVAL", "5")))
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)

    if args.mode == "check":
        _OUT = sys.stderr  # stdout carries exactly one JSON line
        return run_check(args.addr, args.peer_id, args.timeout)

    sys.stdout.reconfigure(line_buffering=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log(f"mtls-app {args.mode} starting; Workload API {socket_path()}")
    log(agent_attestation())
    source = open_source(stop, timeout=args.timeout)
    peer = expected_peer(source, args.peer_id)
    try:
        if args.mode == "server":
            serve(source, args.addr, peer, stop)
        elif args.mode == "client":
            run_client(source, args.addr, peer, args.interval, stop)
        else:
            ready = threading.Event()
            threading.Thread(target=serve, args=(source, args.addr, peer, stop, ready), daemon=True).start()
            ready.wait(args.timeout)
            run_client(source, args.addr, peer, args.interval, stop)
    finally:
        log(f"mtls-app {args.mode} stopping")
        source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
