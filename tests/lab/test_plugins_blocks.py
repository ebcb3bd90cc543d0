"""Two top-level ``plugins`` blocks, read by the real spire-server 1.15.3: it loads only
the first (a broken tpm_devid in the second block is never configured), and the
suite's view of the file (``plugins()``) is that first block too."""

from __future__ import annotations

import subprocess

import pytest

from lab.spire_build import find_spire
from spire_migration.config.hclconfig import HclConfig

pytestmark = pytest.mark.lab

SERVER = """\
server {{
    bind_address = "127.0.0.1"
    bind_port = "18081"
    socket_path = "{d}/api.sock"
    trust_domain = "example.org"
    data_dir = "{d}/data"
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{d}/data/datastore.sqlite3"
        }}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"""
BROKEN = """plugins {{
    NodeAttestor "tpm_devid" {{
        plugin_data {{
            devid_ca_path = "{d}/missing-devid-ca.pem"
            endorsement_ca_path = "{d}/missing-ek-ca.pem"
        }}
    }}
}}
"""
BODY = 'plugin_data {{\n    devid_ca_path = "{d}/missing-devid-ca.pem"\n' \
       '    endorsement_ca_path = "{d}/missing-ek-ca.pem"\n}}'


def _validate(path) -> subprocess.CompletedProcess:
    bin_dir = find_spire()
    if bin_dir is None:
        pytest.skip("SPIRE 1.15.3 is not built (python -m lab build)")
    return subprocess.run([str(bin_dir / "spire-server"), "validate", "-config", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_spire_reads_only_the_first_plugins_block(tmp_path):
    d = tmp_path
    two = tmp_path / "two.conf"
    two.write_text(SERVER.format(d=d) + BROKEN.format(d=d))
    seen = _validate(two)
    assert seen.returncode == 0, seen.stdout + seen.stderr          # the second block is never read
    cfg = HclConfig.load(two)
    assert set(cfg.plugins("NodeAttestor")) == {"join_token"}        # the suite's view agrees
    # The editor writes where SPIRE reads: the same plugin in the first block is configured.
    one = tmp_path / "one.conf"
    one.write_text(HclConfig.parse(SERVER.format(d=d)).with_plugin(
        "NodeAttestor", "tpm_devid", BODY.format(d=d)).text)
    refused = _validate(one)
    assert refused.returncode != 0 and "unable to load DevID trust bundle" in refused.stdout + refused.stderr
    edited = cfg.with_plugin("NodeAttestor", "tpm_devid", BODY.format(d=d))
    two.write_text(edited.text)
    assert _validate(two).returncode != 0                              # SPIRE now loads it: first block
