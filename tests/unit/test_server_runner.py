"""The SPIRE server CLI run through a testinfra host (a fleet's server host, from a controller)."""

from __future__ import annotations

import json
import stat
import types
from pathlib import Path

import pytest
import testinfra

from fixtures.audited import remote_only
from spire_migration.errors import SpireError
from spire_migration.node.spire import HostRunner, SpireServer


def _fake_cli(tmp_path: Path, body: str) -> Path:
    """A stand-in spire-server that records its argv and prints ``body``."""
    script = tmp_path / "spire-server"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv\ncat <<'EOF'\n{body}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _server(tmp_path: Path, body: str, timeout: float = 10.0) -> SpireServer:
    runner = HostRunner(testinfra.get_host("local://"))
    return SpireServer(_fake_cli(tmp_path, body), tmp_path / "api.sock", timeout=timeout, runner=runner)


def test_the_cli_runs_on_the_host(tmp_path: Path) -> None:
    srv = _server(tmp_path, '{"agents": [{"id": {"trust_domain": "example.org", "path": "/a"}}]}')
    assert [a["id"]["path"] for a in srv.agents()] == ["/a"]
    assert (tmp_path / "argv").read_text().split() == ["agent", "list", "-output", "json",
                                                       "-socketPath", str(tmp_path / "api.sock")]
    assert srv.runner.name == "local"


def test_a_join_token_filter_never_reaches_the_host(tmp_path: Path) -> None:
    parent = "spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"
    entry = {"id": "e1", "spiffe_id": {"trust_domain": "example.org", "path": "/w"},
             "parent_id": {"trust_domain": "example.org", "path": parent.split("example.org")[1]}}
    srv = _server(tmp_path, json.dumps({"entries": [entry]}))
    assert [e["id"] for e in srv.entries(parentID=parent)] == ["e1"]
    assert "0d1f5c2e" not in (tmp_path / "argv").read_text()


def test_health_asks_the_host_for_the_socket(tmp_path: Path) -> None:
    srv = _server(tmp_path, "")
    assert not srv.healthy()           # no socket on the host
    (tmp_path / "api.sock").write_text("")
    assert srv.healthy()               # the fake CLI exits 0


def test_writes_and_input_are_refused_remotely(tmp_path: Path) -> None:
    srv = _server(tmp_path, "{}")
    with pytest.raises(SpireError, match="batch files on the server's own host"):
        srv.create_entries([{"spiffe_id": "spiffe://example.org/w", "parent_id": "spiffe://example.org/a"}])
    with pytest.raises(SpireError, match="without input"):
        srv.run("entry", "show", stdin="{}")
    assert not (tmp_path / "argv").exists()


def test_a_hung_cli_times_out_on_the_host(tmp_path: Path) -> None:
    script = tmp_path / "spire-server"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    srv = SpireServer(script, tmp_path / "api.sock", timeout=1,
                      runner=HostRunner(testinfra.get_host("local://")))
    with pytest.raises(SpireError, match="timed out"):
        srv.agents()


def _config(hosts: str | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(option=types.SimpleNamespace(hosts=hosts))


@pytest.mark.parametrize(("hosts", "applies"), [(None, True), ("local://", True),
                                                ("local://,ssh://n1", True),
                                                ("ansible://spire_agents", False),
                                                ("ssh://n1,docker://n2", False)])
def test_node_wide_checklists_need_a_local_host(hosts: str | None, applies: bool) -> None:
    why = remote_only(_config(hosts))
    assert (why is None) is applies
    if why:
        assert why.startswith("not applicable") and hosts in why
