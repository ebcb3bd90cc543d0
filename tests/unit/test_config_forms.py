"""Configs SPIRE reads differently from python-hcl2: two ``plugins`` blocks (SPIRE
loads only the first), and the JSON form of the config (the helm chart's)."""

from __future__ import annotations

import pytest

from spire_migration.hclconfig import HclConfig

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
