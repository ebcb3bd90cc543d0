"""The fleet rollback parts' inputs: the entry point's --part/--handoff rules and marker, the rollback
handoff's refusals, the token file's refusals (no SPIRE needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spire_migration import cli
from spire_migration.config.target import Target
from spire_migration.errors import ConfigError, MigrationError, TargetError
from spire_migration.procedures.fleet_rollback import AgentRollback, RollbackHandoff, token_path
from spire_migration.records.journal import Journal

TD = "example.org"
GOOD = RollbackHandoff("node-2", f"spiffe://{TD}/spire/agent/join_token/<redacted:0a1b2c3d>",
                       f"spiffe://{TD}/spire/agent/tpm_devid/ab12", TD)


def _inputs(*argv: str) -> str | None:
    args, rest = cli.parser().parse_known_args(list(argv))
    return cli.check_inputs(args, rest)


@pytest.mark.parametrize("argv,problem", [
    (("rollback", "--part", "token", "--target", "t.toml"), "--handoff FILE goes with"),
    (("rollback", "--part", "agent", "--target", "t.toml", "--handoff", "h.json"), "--handoff FILE goes with"),
    (("rollback", "--part", "make", "--target", "t.toml", "--handoff", "h.json"), "rollback --part takes one of"),
    (("migrate", "--part", "reparent", "--target", "t.toml", "--handoff", "h.json"), "migrate --part takes one of"),
    (("validate", "--part", "agent", "--target", "t.toml"), "--part goes with migrate or rollback"),
])
def test_the_entry_point_refuses_a_part_that_does_not_fit(argv, problem):
    assert problem in (_inputs(*argv) or "")


def test_a_rollback_part_runs_its_own_scenarios_only():
    args, _ = cli.parser().parse_known_args(["rollback", "--part", "reparent", "--target", "t.toml",
                                             "--handoff", "h.json"])
    argv = cli.pytest_args(args, [], Path("/suite"))
    assert argv[argv.index("-m") + 1] == "fleet_rollback and part_rollback_reparent"
    assert f"--handoff={Path('h.json').absolute()}" in argv
    assert _inputs("rollback", "--part", "agent", "--target", "t.toml") is None


@pytest.mark.parametrize("field,value", [
    ("new_agent", f"spiffe://{TD}/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"),   # unredacted
    ("new_agent", f"spiffe://other.org/spire/agent/join_token/<redacted:0a1b2c3d>"),
    ("tpm_agent", f"spiffe://{TD}/spire/agent/join_token/<redacted:0a1b2c3d>"),
    ("node", "../../etc/cron.d"),
])
def test_a_rollback_handoff_that_names_the_wrong_thing_is_refused(field, value):
    text = json.dumps({**json.loads(GOOD.to_json()), field: value})
    with pytest.raises((ConfigError, TargetError)):
        RollbackHandoff.parse(text, TD)


def test_a_rollback_handoff_with_an_extra_field_is_refused():
    with pytest.raises(ConfigError):
        RollbackHandoff.parse(json.dumps({**json.loads(GOOD.to_json()), "token": "x" * 36}), TD)
    assert RollbackHandoff.parse(GOOD.to_json(), TD) == GOOD


def _node(tmp_path: Path) -> AgentRollback:
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir(mode=0o700)
    t = Target.from_dict({"node": "node-2", "journal": {"dir": str(journal_dir)}})
    return AgentRollback(t, Journal(t.journal_root))


@pytest.mark.parametrize("mode,content,problem", [
    (None, None, "no join token"),
    (0o644, "0d1f5c2e-aaaa-bbbb-cccc-1234567890ab\n", "not a private file"),
    (0o600, "short\n", "does not hold a join token"),
    (0o600, "0d1f5c2e-aaaa-bbbb-cccc-1234567890ab; rm -rf /\n", "does not hold a join token"),
])
def test_the_node_part_refuses_a_token_file_it_cannot_trust(tmp_path, mode, content, problem):
    node = _node(tmp_path)
    path = token_path(node.t.journal_root)
    if content is not None:
        path.write_text(content)
        os.chmod(path, mode)
    with pytest.raises(MigrationError) as err:
        node.read_token()
    assert problem in str(err.value) and "0d1f5c2e" not in str(err.value)


def test_the_node_part_refuses_a_link_for_a_token_file(tmp_path):
    node = _node(tmp_path)
    real = tmp_path / "elsewhere"
    real.write_text("0d1f5c2e-aaaa-bbbb-cccc-1234567890ab\n")
    os.chmod(real, 0o600)
    token_path(node.t.journal_root).symlink_to(real)
    with pytest.raises(MigrationError, match="not a private file"):
        node.read_token()


def test_the_token_read_is_a_secret(tmp_path):
    node = _node(tmp_path)
    path = token_path(node.t.journal_root)
    path.write_text("0d1f5c2e-aaaa-bbbb-cccc-1234567890ab\n")
    os.chmod(path, 0o600)
    token = node.read_token()
    assert "0d1f5c2e" not in f"{token} {token!r}" and token.reveal().startswith("0d1f5c2e")
