"""The pre-stop check's pure parts: a port held by the server being replaced is fine,
one held by anyone else is not; data dirs and socket paths are compared with the target."""

from __future__ import annotations

import os
import socket

from spire_migration.config import startcheck
from spire_migration.config.target import Target


def test_bind_port_free_held_by_us_or_by_another() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        evidence: list[str] = []
        assert startcheck._bind_port({"bind_port": str(port)}, None, evidence) == []   # bound, not listening
        s.listen()
        problems = startcheck._bind_port({"bind_port": port}, None, [])
        assert len(problems) == 1 and "held by another process" in problems[0].found
        assert startcheck._bind_port({"bind_port": port}, os.getpid(), evidence) == []
        assert f"held by the server being replaced (pid {os.getpid()})" in evidence[-1]


def test_data_dirs_and_socket_paths(tmp_path) -> None:
    t = Target()
    t.server.socket = tmp_path / "server" / "api.sock"
    t.agent.socket = tmp_path / "agent" / "api.sock"
    srv = {"data_dir": str(tmp_path), "socket_path": str(t.server.socket)}
    agt = {"data_dir": str(tmp_path / "gone"), "socket_path": str(tmp_path / "elsewhere.sock")}
    problems = startcheck._dirs_and_sockets(t, [("server", srv), ("agent", agt)], [])
    assert [p.what.rsplit(": ", 1)[1] for p in problems] == ["data_dir", "socket_path"]
    assert problems[0].found == "missing" and str(t.agent.socket) in problems[1].expected
    assert all(p.remedy for p in problems)


def test_trust_domain_of_an_id() -> None:
    assert startcheck._td("spiffe://example.org/w") == "example.org"
    assert startcheck._td({"trust_domain": "example.org", "path": "/w"}) == "example.org"
    assert startcheck._td(None) is None
