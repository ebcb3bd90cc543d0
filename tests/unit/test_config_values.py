"""Every value the suite writes into a SPIRE config is quoted by one function:
a crafted path cannot add a key (e.g. a plugin_cmd) to the block it lands in."""

from __future__ import annotations

from pathlib import Path

import pytest

from spire_migration.config import attestor
from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig import HclConfig
from spire_migration.config.target import Target

SERVER = 'server {\n  trust_domain = "example.org"\n}\nplugins {\n  NodeAttestor "join_token" {\n' \
         '    plugin_data {}\n  }\n}\n'
AGENT = 'agent {\n  trust_domain = "example.org"\n}\nplugins {\n  NodeAttestor "join_token" {\n' \
        '    plugin_data {}\n  }\n}\n'

CRAFTED = [
    'x" plugin_cmd = "/tmp/evil',
    'x"\nplugin_cmd = "/tmp/evil',
    'x\\" \n plugin_cmd = "/tmp/evil',
    "/d/back\\slash\ttab.pem",
    "/d/ctl\x01\x7f.pem",
]


@pytest.mark.parametrize("path", CRAFTED)
def test_crafted_server_path_stays_one_literal_value(path: str) -> None:
    t = Target()
    t.attestor.devid_ca = Path(path)
    new = HclConfig.parse(SERVER, "server.conf").with_plugin(
        "NodeAttestor", "tpm_devid", attestor.server_body(t))
    block = HclConfig.parse(new.text, "server.conf").plugins("NodeAttestor")["tpm_devid"]
    assert set(block) == {"plugin_data"}, f"keys injected: {sorted(block)}"
    assert block["plugin_data"]["devid_ca_path"] == path
    assert set(block["plugin_data"]) == {"devid_ca_path", "endorsement_ca_path"}


@pytest.mark.parametrize("path", CRAFTED)
def test_crafted_agent_paths_stay_literal(path: str) -> None:
    t = Target()
    t.attestor.devid_cert = Path(path)
    t.tpm.device = Path(path + "-tpm")
    new = HclConfig.parse(AGENT, "agent.conf").with_plugin(
        "NodeAttestor", "tpm_devid", attestor.agent_body(t), replacing="join_token")
    block = HclConfig.parse(new.text, "agent.conf").plugins("NodeAttestor")["tpm_devid"]
    assert set(block) == {"plugin_data"}
    data = block["plugin_data"]
    assert data["devid_cert_path"] == path and data["tpm_device_path"] == path + "-tpm"
    assert len(data) == 4


@pytest.mark.parametrize("path", CRAFTED)
def test_crafted_plugin_cmd_of_the_external_plugin(path: str) -> None:
    t = Target()
    t.attestor.profile = "tpm"
    t.attestor.plugin_cmd_server = Path(path)
    t.attestor.ca_path = Path(path + "-ca")
    new = HclConfig.parse(SERVER, "server.conf").with_plugin("NodeAttestor", "tpm", attestor.server_body(t))
    block = HclConfig.parse(new.text, "server.conf").plugins("NodeAttestor")["tpm"]
    assert block == {"plugin_cmd": path, "plugin_data": {"ca_path": path + "-ca"}}


@pytest.mark.parametrize("path", ["/d/${env.HOME}/ca.pem", "/d/%{ if true }x%{ endif }.pem"])
def test_template_markers_are_refused_before_anything_is_written(path: str) -> None:
    # SPIRE (HCL v1) reads ${ as text, python-hcl2 as a template: no escape means the same to both.
    t = Target()
    t.attestor.devid_ca = Path(path)
    with pytest.raises(ConfigError, match="cannot write the string") as err:
        attestor.server_body(t)
    assert err.value.remedy
