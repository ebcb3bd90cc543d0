"""Configs SPIRE reads differently from python-hcl2: two ``plugins`` blocks (SPIRE
loads only the first), and the JSON form of the config (the helm chart's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spire_migration.config import attestor
from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig import HclConfig, JsonConfig, load_config, parse_config
from spire_migration.config.target import Target

TPM_BODY = 'plugin_data {\n    devid_ca_path = "/ca.pem"\n    endorsement_ca_path = "/ek.pem"\n}'

TWO_BLOCKS = """\
server {
    trust_domain = "example.org"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}

# an operator's later addition: SPIRE never reads it
plugins {
    KeyManager "memory" {
        plugin_data {}
    }
}
"""


def test_the_view_of_two_plugins_blocks_is_the_first_only() -> None:
    cfg = HclConfig.parse(TWO_BLOCKS, "server.conf")
    assert cfg.plugins_block_lines() == [5, 17]
    assert cfg.plugins("KeyManager") == {}
    assert set(cfg.plugins("DataStore")) == {"sql"}


def test_step4_edit_lands_in_the_block_spire_reads() -> None:
    cfg = HclConfig.parse(TWO_BLOCKS, "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", TPM_BODY)
    first, second = new.text.split("# an operator's later addition")
    assert 'NodeAttestor "tpm_devid"' in first and 'NodeAttestor "tpm_devid"' not in second
    assert set(new.plugins("NodeAttestor")) == {"join_token", "tpm_devid"}
    # Removal (finalize) works on the same block, and gives the file back.
    assert new.without_plugin("NodeAttestor", "tpm_devid").text == TWO_BLOCKS


def test_a_plugin_only_in_the_ignored_block_is_not_seen() -> None:
    text = TWO_BLOCKS.replace('KeyManager "memory"', 'NodeAttestor "tpm_devid"')
    cfg = HclConfig.parse(text, "server.conf")
    assert set(cfg.plugins("NodeAttestor")) == {"join_token"}
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", TPM_BODY)
    assert 'NodeAttestor "tpm_devid"' in new.text.split("# an operator's")[0]


# ---------------------------------------------------------------- the JSON form

SERVER_DOC = {
    "server": {"bind_address": "127.0.0.1", "bind_port": "8081", "trust_domain": "example.org",
               "data_dir": "/opt/spire/data/server", "log_level": "DEBUG", "ca_ttl": "168h"},
    "plugins": {
        "DataStore": {"sql": {"plugin_data": {"database_type": "sqlite3",
                                              "connection_string": "/opt/spire/data/server/datastore.sqlite3"}}},
        "NodeAttestor": {"join_token": {"plugin_data": {}}},
        "KeyManager": {"disk": {"plugin_data": {"keys_path": "/opt/spire/data/server/keys.json"}}},
    },
    "health_checks": {"listener_enabled": True, "bind_port": "8080"},
}
AGENT_DOC = {
    "agent": {"data_dir": "/opt/spire/data/agent", "server_address": "127.0.0.1", "server_port": "8081",
              "trust_domain": "example.org", "join_token": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
              "insecure_bootstrap": True},
    "plugins": {
        "NodeAttestor": {"join_token": {"plugin_data": {}}},
        "KeyManager": {"disk": {"plugin_data": {"directory": "/opt/spire/data/agent"}}},
        "WorkloadAttestor": {"docker": {"plugin_data": {"docker_socket_path": "unix:///var/run/docker.sock"}},
                             "unix": {"plugin_data": {}}},
    },
}
# The helm chart's form (Go's toPrettyJson: two spaces); the same 4-space form exists.
SERVER_JSON = json.dumps(SERVER_DOC, indent=2) + "\n"
AGENT_JSON = json.dumps(AGENT_DOC, indent=4)


def _target() -> Target:
    return Target()


def test_json_is_recognised_and_read_as_spire_reads_it() -> None:
    cfg = parse_config(SERVER_JSON, "server.conf")
    assert isinstance(cfg, JsonConfig) and cfg.format == "json"
    assert cfg.section("server")["trust_domain"] == "example.org"
    assert set(cfg.plugins("NodeAttestor")) == {"join_token"}
    assert cfg.plugins("KeyManager") == {"disk": {"plugin_data": {"keys_path": "/opt/spire/data/server/keys.json"}}}
    assert parse_config("# hcl\nagent {}\n").format == "hcl"


def test_json_server_gets_tpm_devid_next_to_join_token_and_back() -> None:
    cfg = parse_config(SERVER_JSON, "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", attestor.server_body(_target()))
    assert list(new.plugins("NodeAttestor")) == ["join_token", "tpm_devid"]
    assert new.plugins("NodeAttestor")["tpm_devid"]["plugin_data"]["devid_ca_path"] == \
        str(_target().attestor.devid_ca)
    doc = json.loads(new.text)
    assert list(doc) == list(SERVER_DOC) and list(doc["plugins"]) == list(SERVER_DOC["plugins"])
    assert {k: v for k, v in doc.items() if k != "plugins"} == {k: v for k, v in SERVER_DOC.items() if k != "plugins"}
    # Formatting kept: the diff only adds lines.
    diff = cfg.diff(new, "server.conf")
    assert [ln for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")] == []
    assert new.text.endswith("}\n") and '\n  "server": {' in new.text
    # finalize's removal, and idempotence
    assert new.without_plugin("NodeAttestor", "tpm_devid").text == SERVER_JSON
    assert new.with_plugin("NodeAttestor", "tpm_devid", attestor.server_body(_target())).text == new.text
    assert set(new.without_plugin("NodeAttestor", "join_token").plugins("NodeAttestor")) == {"tpm_devid"}


def test_json_agent_swaps_join_token_for_exactly_one_tpm_attestor() -> None:
    cfg = parse_config(AGENT_JSON, "agent.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", attestor.agent_body(_target()), replacing="join_token")
    new = new.without_setting("agent", "join_token")
    assert list(new.plugins("NodeAttestor")) == ["tpm_devid"]
    assert "join_token" not in new.section("agent")
    assert new.plugins("WorkloadAttestor") == cfg.plugins("WorkloadAttestor")
    doc = json.loads(new.text)
    assert list(doc["plugins"]) == ["NodeAttestor", "KeyManager", "WorkloadAttestor"]
    assert list(doc["agent"]) == [k for k in AGENT_DOC["agent"] if k != "join_token"]
    assert '\n    "agent": {' in new.text and not new.text.endswith("\n")
    assert "aaaaaaaa-bbbb" not in cfg.diff(new, "agent.conf")      # the token is redacted
    assert new.with_setting("agent", "join_token", "x").section("agent")["join_token"] == "x"


def test_json_values_stay_literal_whatever_they_hold() -> None:
    t = _target()
    t.attestor.devid_ca = Path('x" , "plugin_cmd": "/tmp/evil')
    new = parse_config(SERVER_JSON).with_plugin("NodeAttestor", "tpm_devid", attestor.server_body(t))
    assert new.plugins("NodeAttestor")["tpm_devid"] == {
        "plugin_data": {"devid_ca_path": str(t.attestor.devid_ca),
                        "endorsement_ca_path": str(t.attestor.endorsement_ca)}}


def test_json_another_layout_is_reindented_with_its_own_indent() -> None:
    compact = json.dumps(AGENT_DOC)
    new = parse_config(compact).without_setting("agent", "join_token")
    assert "\n" not in new.text and json.loads(new.text)["agent"].get("join_token") is None
    tabbed = json.dumps(AGENT_DOC, indent="\t").replace('"agent": {', '"agent":   {')
    new = parse_config(tabbed).without_setting("agent", "join_token")
    assert '\n\t"agent": {' in new.text


@pytest.mark.parametrize("text, match", [
    ('{"agent": {}, "agent": {}}', "appears twice"),
    ('{"agent": {,}}', "does not parse as JSON"),
    ('{"plugins": {"NodeAttestor": [{"join_token": {}}]}}', "plugins layout"),
])
def test_bad_json_is_a_clear_error(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_config(text, "agent.conf").plugins("NodeAttestor")
    assert err.value.remedy


def test_load_config_reads_either_form(tmp_path) -> None:
    (tmp_path / "a.conf").write_text(AGENT_JSON)
    (tmp_path / "b.conf").write_text("agent {}\n")
    assert load_config(tmp_path / "a.conf").format == "json"
    assert load_config(tmp_path / "b.conf").format == "hcl"
