"""In-place editing of SPIRE HCL configs: comments and formatting survive,
every result re-parses, and the editor is not fooled by comments or strings."""

from __future__ import annotations

import difflib

import hcl2
import pytest

from spire_migration.config import hclconfig
from spire_migration.errors import ConfigError
from spire_migration.config.hclconfig import HclConfig

# The guide's Phase 3 server.conf, as an operator keeps it: comments everywhere,
# one of them mentioning the Phase 4 block, a string with braces, a block comment
# with a brace, a trailing same-line comment.
SERVER_CONF = """\
# SPIRE Server - Phase 3 (join_token node attestation)
# Phase 4 will add: NodeAttestor "tpm" {
server {
    bind_address = "0.0.0.0"
    bind_port = "8081"
    socket_path = "/tmp/spire-server/private/api.sock"
    trust_domain = "example.org"
    data_dir = "/opt/spire/data/server"
    log_level = "DEBUG"
    ca_ttl = "168h"
    default_x509_svid_ttl = "1h"   // short-lived SVIDs

    # the org name below has braces: "Example {Ops}"
    ca_subject {
        country = ["US"]
        organization = ["Example {Ops} }", "Lab \\"{\\" Ops"]
        common_name = ""
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "/opt/spire/data/server/datastore.sqlite3"
        }
    }

    /* The disk key manager keeps the CA keys across restarts.
       Never "memory" here } NodeAttestor "join_token" { */
    KeyManager "disk" {
        plugin_data {
            keys_path = "/opt/spire/data/server/keys.json"
        }
    }

    # Join tokens for Phase 3 agents
    NodeAttestor "join_token" {
        plugin_data {}
    }
    # TODO Phase 4: NodeAttestor "tpm" { plugin_data { ... } }
}

health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "8080"
    live_path = "/live"
    ready_path = "/ready"
}
"""

TOKEN = "0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"

AGENT_CONF = f"""\
# SPIRE Agent - Phase 3
agent {{
    data_dir = "/opt/spire/data/agent"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "8081"
    socket_path = "/tmp/spire-agent/public/api.sock"
    trust_bundle_path = "/opt/spire/conf/agent/bootstrap.crt"
    trust_domain = "example.org"
    join_token = "{TOKEN}"   # one-time token, spent on first attestation
}}

plugins {{
    # Software node attestation (Phase 3). Phase 4 replaces this with
    # NodeAttestor "tpm" {{ ... }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}

    KeyManager "disk" {{
        plugin_data {{
            directory = "/opt/spire/data/agent"
        }}
    }}

    WorkloadAttestor "docker" {{
        plugin_data {{ docker_socket_path = "unix:///var/run/docker.sock" }}
    }}

    WorkloadAttestor "unix" {{
        plugin_data {{
            // "}}" in a comment, and a }} alone
            discover_workload_path = true
        }}
    }}
}}
"""

SERVER_TPM_BODY = """\
plugin_data {
    devid_ca_path = "/opt/spire/conf/server/devid-ca.pem"
    endorsement_ca_path = "/opt/spire/conf/server/endorsement-ca.pem"
}"""

AGENT_TPM_BODY = """\
plugin_data {
    devid_cert_path = "/opt/spire/conf/agent/devid.pem"
    devid_priv_path = "/opt/spire/conf/agent/devid.priv"
    devid_pub_path = "/opt/spire/conf/agent/devid.pub"
    tpm_device_path = "/dev/tpmrm0"
}"""

SERVER_TPM = {"plugin_data": {"devid_ca_path": "/opt/spire/conf/server/devid-ca.pem",
                              "endorsement_ca_path": "/opt/spire/conf/server/endorsement-ca.pem"}}
AGENT_TPM = {"plugin_data": {"devid_cert_path": "/opt/spire/conf/agent/devid.pem",
                             "devid_priv_path": "/opt/spire/conf/agent/devid.priv",
                             "devid_pub_path": "/opt/spire/conf/agent/devid.pub",
                             "tpm_device_path": "/dev/tpmrm0"}}


@pytest.fixture
def server() -> HclConfig:
    return HclConfig.parse(SERVER_CONF, name="server.conf")


@pytest.fixture
def agent() -> HclConfig:
    return HclConfig.parse(AGENT_CONF, name="agent.conf")


def opcodes(old: str, new: str) -> set[str]:
    sm = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    return {tag for tag, *_ in sm.get_opcodes()} - {"equal"}


def added_lines(old: str, new: str) -> list[str]:
    sm = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    return [line for tag, _, _, j1, j2 in sm.get_opcodes() if tag == "insert"
            for line in new.splitlines()[j1:j2]]


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "#" in line or "//" in line or "/*" in line or "*/" in line]


def parses(text: str) -> dict:
    return hcl2.loads(text)


# ---------------------------------------------------------------- reading

def test_views_of_the_phase3_files(server: HclConfig, agent: HclConfig) -> None:
    assert server.plugins("NodeAttestor") == {"join_token": {"plugin_data": {}}}
    assert server.plugins("DataStore")["sql"]["plugin_data"]["database_type"] == "sqlite3"
    assert server.section("server")["trust_domain"] == "example.org"
    assert server.section("server")["ca_subject"]["organization"] == ["Example {Ops} }", 'Lab "{" Ops']
    assert agent.plugins("WorkloadAttestor") == {
        "docker": {"plugin_data": {"docker_socket_path": "unix:///var/run/docker.sock"}},
        "unix": {"plugin_data": {"discover_workload_path": True}},
    }
    assert agent.section("agent")["join_token"] == TOKEN
    assert agent.plugins("Nope") == {}
    data = agent.data
    assert data["plugins"]["KeyManager"] == {"disk": {"plugin_data": {"directory": "/opt/spire/data/agent"}}}
    assert "__is_block__" not in repr(data) and '"' not in repr(data["agent"]["trust_domain"])
    assert agent.text == AGENT_CONF


def test_missing_section_is_a_config_error(agent: HclConfig) -> None:
    with pytest.raises(ConfigError, match="no server section"):
        agent.section("server")


# ---------------------------------------------------------------- server: add tpm_devid

def test_server_add_tpm_devid_only_adds_lines(server: HclConfig) -> None:
    new = server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert opcodes(server.text, new.text) == {"insert"}
    assert added_lines(server.text, new.text) == [
        "",
        '    NodeAttestor "tpm_devid" {',
        "        plugin_data {",
        '            devid_ca_path = "/opt/spire/conf/server/devid-ca.pem"',
        '            endorsement_ca_path = "/opt/spire/conf/server/endorsement-ca.pem"',
        "        }",
        "    }",
    ]
    # Dual mode: both attestors, nothing else changed.
    assert new.plugins("NodeAttestor") == {"join_token": {"plugin_data": {}}, "tpm_devid": SERVER_TPM}
    for kind in ("DataStore", "KeyManager"):
        assert new.plugins(kind) == server.plugins(kind)
    assert new.section("server") == server.section("server")
    assert new.data["health_checks"] == server.data["health_checks"]
    # Inserted inside plugins, before its closing brace (after the TODO comment).
    lines = new.text.splitlines()
    assert lines.index('    NodeAttestor "tpm_devid" {') > lines.index('    # TODO Phase 4: NodeAttestor "tpm" { plugin_data { ... } }')
    assert lines.index('    NodeAttestor "tpm_devid" {') < lines.index("health_checks {")
    parses(new.text)


def test_server_add_is_idempotent(server: HclConfig) -> None:
    once = server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    twice = once.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert twice.text == once.text
    assert twice.sha256 == once.sha256


def test_replacing_an_existing_block_replaces_its_whole_span(server: HclConfig) -> None:
    once = server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    other = 'plugin_data {\n  devid_ca_path = "/a.pem"\n  endorsement_ca_path = "/b.pem"\n}'
    changed = once.with_plugin("NodeAttestor", "tpm_devid", other)
    assert changed.plugins("NodeAttestor")["tpm_devid"] == {
        "plugin_data": {"devid_ca_path": "/a.pem", "endorsement_ca_path": "/b.pem"}}
    assert changed.text.count('NodeAttestor "tpm_devid"') == 1
    assert opcodes(server.text, changed.text) == {"insert"}
    # Re-indented to the file's 4-space style.
    assert '            devid_ca_path = "/a.pem"' in changed.text.splitlines()


def test_add_then_remove_gives_back_the_original_bytes(server: HclConfig) -> None:
    new = server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert new.without_plugin("NodeAttestor", "tpm_devid").text == SERVER_CONF


# ---------------------------------------------------------------- agent: join_token -> tpm_devid

@pytest.mark.parametrize("how", ["replacing", "remove_then_add"])
def test_agent_swap_to_tpm_devid_keeps_docker_and_comments(agent: HclConfig, how: str) -> None:
    if how == "replacing":
        new = agent.with_plugin("NodeAttestor", "tpm_devid", AGENT_TPM_BODY, replacing="join_token")
    else:
        new = agent.without_plugin("NodeAttestor", "join_token").with_plugin(
            "NodeAttestor", "tpm_devid", AGENT_TPM_BODY)
    # Exactly one NodeAttestor on the agent (SPIRE refuses two).
    assert new.plugins("NodeAttestor") == {"tpm_devid": AGENT_TPM}
    assert new.plugins("WorkloadAttestor") == agent.plugins("WorkloadAttestor")
    assert '        plugin_data { docker_socket_path = "unix:///var/run/docker.sock" }' in new.text.splitlines()
    assert new.plugins("KeyManager") == agent.plugins("KeyManager")
    assert new.section("agent") == agent.section("agent")
    for line in comment_lines(AGENT_CONF):
        assert line in new.text.splitlines(), line
    assert 'NodeAttestor "join_token"' not in new.text
    parses(new.text)


def test_agent_swap_in_place_keeps_position(agent: HclConfig) -> None:
    new = agent.with_plugin("NodeAttestor", "tpm_devid", AGENT_TPM_BODY, replacing="join_token")
    lines = new.text.splitlines()
    assert lines[lines.index('    # NodeAttestor "tpm" { ... }') + 1] == '    NodeAttestor "tpm_devid" {'
    assert lines.index('    NodeAttestor "tpm_devid" {') < lines.index('    KeyManager "disk" {')


def test_agent_swap_is_idempotent(agent: HclConfig) -> None:
    once = agent.with_plugin("NodeAttestor", "tpm_devid", AGENT_TPM_BODY, replacing="join_token")
    twice = once.with_plugin("NodeAttestor", "tpm_devid", AGENT_TPM_BODY, replacing="join_token")
    assert twice.text == once.text
    removed = once.without_plugin("NodeAttestor", "join_token")
    assert removed.text == once.text


def test_replacing_an_absent_block_is_an_error(server: HclConfig) -> None:
    with pytest.raises(ConfigError, match='no NodeAttestor "x509pop" to replace'):
        server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY, replacing="x509pop")


# ---------------------------------------------------------------- not fooled by comments and strings

def test_comment_mentioning_a_block_is_not_a_block(server: HclConfig, agent: HclConfig) -> None:
    # 'NodeAttestor "tpm" {' appears only in comments: nothing to remove.
    assert server.without_plugin("NodeAttestor", "tpm").text == SERVER_CONF
    assert agent.without_plugin("NodeAttestor", "tpm").text == AGENT_CONF
    # Adding it creates a real block and keeps the comments that mention it.
    new = server.with_plugin("NodeAttestor", "tpm", 'plugin_data {\n  ca_path = "/ca"\n}')
    assert opcodes(server.text, new.text) == {"insert"}
    assert new.plugins("NodeAttestor")["tpm"] == {"plugin_data": {"ca_path": "/ca"}}
    assert '# Phase 4 will add: NodeAttestor "tpm" {' in new.text


def test_block_comment_with_a_block_header_and_brace(server: HclConfig) -> None:
    # The /* */ comment holds '} NodeAttestor "join_token" {': the real block is the one removed.
    new = server.without_plugin("NodeAttestor", "join_token")
    assert 'Never "memory" here } NodeAttestor "join_token" { */' in new.text
    assert new.plugins("NodeAttestor") == {}
    assert new.plugins("KeyManager") == server.plugins("KeyManager")
    assert opcodes(server.text, new.text) == {"delete"}
    assert "    # Join tokens for Phase 3 agents" in new.text  # comments above stay


def test_string_with_braces_does_not_break_setting_insertion(server: HclConfig) -> None:
    new = server.with_setting("server", "audit_log_enabled", True)
    assert new.section("server")["audit_log_enabled"] is True
    assert new.section("server")["ca_subject"] == server.section("server")["ca_subject"]
    assert added_lines(server.text, new.text) == ["    audit_log_enabled = true"]
    # After the last attribute, before the nested block.
    lines = new.text.splitlines()
    assert lines.index("    audit_log_enabled = true") == lines.index(
        '    default_x509_svid_ttl = "1h"   // short-lived SVIDs') + 1


def test_heredoc_with_braces_is_skipped() -> None:
    text = ('server {\n    trust_domain = "example.org"\n}\n\nplugins {\n'
            '    Notifier "k8sbundle" {\n        plugin_data {\n            note = <<EOT\n'
            'NodeAttestor "x" { } }\n}\nEOT\n        }\n    }\n}\n')
    cfg = HclConfig.parse(text, "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert opcodes(text, new.text) == {"insert"}
    assert set(new.plugins("NodeAttestor")) == {"tpm_devid"}
    assert new.plugins("Notifier") == cfg.plugins("Notifier")


def test_single_line_plugins_block() -> None:
    cfg = HclConfig.parse('plugins { NodeAttestor "join_token" { plugin_data {} } }\n', "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert set(new.plugins("NodeAttestor")) == {"join_token", "tpm_devid"}
    assert new.without_plugin("NodeAttestor", "join_token").plugins("NodeAttestor") == {"tpm_devid": SERVER_TPM}
    parses(new.text)


def test_crlf_file_keeps_crlf() -> None:
    text = SERVER_CONF.replace("\n", "\r\n")
    cfg = HclConfig.parse(text, "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY).with_setting("server", "log_level", "INFO")
    assert "\n" not in new.text.replace("\r\n", "")
    assert new.plugins("NodeAttestor")["tpm_devid"] == SERVER_TPM
    assert new.section("server")["log_level"] == "INFO"


def test_tab_indented_file_gets_tabs() -> None:
    text = 'plugins {\n\tNodeAttestor "join_token" {\n\t\tplugin_data {}\n\t}\n}\n'
    new = HclConfig.parse(text, "server.conf").with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert '\tNodeAttestor "tpm_devid" {\n\t\tplugin_data {\n\t\t\tdevid_ca_path' in new.text


# ---------------------------------------------------------------- settings

def test_remove_join_token_setting(agent: HclConfig) -> None:
    new = agent.without_setting("agent", "join_token")
    assert "join_token" not in new.section("agent")
    assert TOKEN not in new.text
    assert opcodes(agent.text, new.text) == {"delete"}
    removed = [l for l in agent.text.splitlines() if l not in new.text.splitlines()]
    assert removed == [f'    join_token = "{TOKEN}"   # one-time token, spent on first attestation']
    assert {k: v for k, v in agent.section("agent").items() if k != "join_token"} == new.section("agent")
    assert new.without_setting("agent", "join_token").text == new.text  # idempotent
    parses(new.text)


def test_set_replaces_value_in_place(server: HclConfig) -> None:
    new = server.with_setting("server", "log_level", "INFO")
    assert new.section("server")["log_level"] == "INFO"
    assert opcodes(server.text, new.text) == {"replace"}
    assert [l for l in new.text.splitlines() if l not in server.text.splitlines()] == ['    log_level = "INFO"']
    assert new.with_setting("server", "log_level", "INFO").text == new.text
    # A trailing comment on the line survives a value change.
    ttl = new.with_setting("server", "default_x509_svid_ttl", "30m")
    assert '    default_x509_svid_ttl = "30m"   // short-lived SVIDs' in ttl.text.splitlines()


@pytest.mark.parametrize("value, rendered", [
    (8081, "bind_port = 8081"),
    (True, "bind_port = true"),
    ('a "quoted" \\ value', 'bind_port = "a \\"quoted\\" \\\\ value"'),
    (["x", 1], 'bind_port = ["x", 1]'),
])
def test_setting_values_are_rendered_as_hcl(server: HclConfig, value, rendered: str) -> None:
    new = server.with_setting("health_checks", "bind_port", value)
    assert f"    {rendered}" in new.text.splitlines()
    assert new.data["health_checks"]["bind_port"] == value


def test_set_new_key_in_agent_and_back(agent: HclConfig) -> None:
    new = agent.without_setting("agent", "join_token").with_setting("agent", "join_token", "tok-123")
    assert new.section("agent")["join_token"] == "tok-123"
    assert new.text.splitlines()[new.text.splitlines().index('    trust_domain = "example.org"') + 1] \
        == '    join_token = "tok-123"'
    once = agent.with_setting("agent", "insecure_bootstrap", False)
    assert once.with_setting("agent", "insecure_bootstrap", False).text == once.text
    assert once.section("agent")["insecure_bootstrap"] is False


def test_template_markers_in_values_are_refused(agent: HclConfig) -> None:
    with pytest.raises(ConfigError):
        agent.with_setting("agent", "data_dir", "/x/${HOME}")


# ---------------------------------------------------------------- errors and defences

def test_malformed_hcl_names_the_file_and_line(tmp_path) -> None:
    bad = tmp_path / "agent.conf"
    bad.write_text('agent {\n    trust_domain = "example.org"\n    join_token = \n}\n')
    with pytest.raises(ConfigError) as exc:
        HclConfig.load(bad)
    err = exc.value
    assert str(bad) in err.message
    assert err.expected == "valid HCL"
    assert err.found.startswith(f"{bad}: line 3, column ")
    assert str(bad) in str(err)


@pytest.mark.parametrize("text", [
    AGENT_CONF.rstrip()[:-1],                          # missing closing brace
    AGENT_CONF + "}\n",                                # one brace too many
    AGENT_CONF.replace('"example.org"', '"example.org'),  # unterminated string
])
def test_malformed_variants_raise_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="server.conf does not parse"):
        HclConfig.parse(text, name="server.conf")


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        HclConfig.load(tmp_path / "nope.conf")


def test_invalid_body_is_refused(server: HclConfig) -> None:
    with pytest.raises(ConfigError, match="not valid HCL"):
        server.with_plugin("NodeAttestor", "tpm_devid", "plugin_data {\n devid_ca_path = \n}")


def test_no_plugins_block_is_refused() -> None:
    cfg = HclConfig.parse('server {\n  trust_domain = "example.org"\n}\n', "server.conf")
    with pytest.raises(ConfigError, match="no plugins block"):
        cfg.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)


def test_duplicate_plugin_is_refused() -> None:
    text = 'plugins {\n  NodeAttestor "a" {\n  }\n  NodeAttestor "a" {\n  }\n}\n'
    cfg = HclConfig.parse(text, "server.conf")
    with pytest.raises(ConfigError, match="declared twice"):
        cfg.plugins("NodeAttestor")
    with pytest.raises(ConfigError, match="declared twice"):
        cfg.without_plugin("NodeAttestor", "a")


def test_bad_edit_is_caught_by_the_reparse_check(server: HclConfig, monkeypatch) -> None:
    real = hclconfig.render.render_block

    def wrong_value(kind, name, body, indent, unit, nl):
        return real(kind, name, body.replace("devid-ca.pem", "other.pem"), indent, unit, nl)

    monkeypatch.setattr(hclconfig.render, "render_block", wrong_value)
    with pytest.raises(ConfigError, match="did not give the intended config"):
        server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)

    def unbalanced(kind, name, body, indent, unit, nl):
        return real(kind, name, body, indent, unit, nl)[:-1]

    monkeypatch.setattr(hclconfig.render, "render_block", unbalanced)
    with pytest.raises(ConfigError, match="would make the file invalid"):
        server.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)


def test_setting_check_catches_a_wrong_value(agent: HclConfig, monkeypatch) -> None:
    monkeypatch.setattr(hclconfig.render, "hcl_value", lambda v: '"something else"')
    with pytest.raises(ConfigError, match="did not give the intended config"):
        agent.with_setting("agent", "log_level", "INFO")


@pytest.mark.parametrize("edit", [
    lambda s, a: s.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY),
    lambda s, a: s.without_plugin("NodeAttestor", "join_token"),
    lambda s, a: s.without_plugin("KeyManager", "disk").with_plugin("KeyManager", "disk", "plugin_data {}"),
    lambda s, a: s.with_setting("server", "bind_port", 8443).without_setting("server", "ca_ttl"),
    lambda s, a: a.with_plugin("NodeAttestor", "tpm_devid", AGENT_TPM_BODY, replacing="join_token")
                  .without_setting("agent", "join_token"),
    lambda s, a: a.without_plugin("WorkloadAttestor", "unix").without_plugin("WorkloadAttestor", "docker"),
    lambda s, a: a.with_setting("agent", "join_token", "x").without_setting("agent", "trust_domain"),
])
def test_every_result_parses(server: HclConfig, agent: HclConfig, edit) -> None:
    new = edit(server, agent)
    assert isinstance(parses(new.text), dict)
    assert HclConfig.parse(new.text, new.name).data == new.data


# ---------------------------------------------------------------- diff, sha256

def test_diff_is_unified_and_redacts_the_token(agent: HclConfig) -> None:
    new = agent.without_setting("agent", "join_token")
    d = agent.diff(new, "/opt/spire/conf/agent/agent.conf")
    assert d.startswith("--- /opt/spire/conf/agent/agent.conf")
    assert "\n+++ " in d and "\n@@ " in d
    assert "-    join_token = " in d
    assert TOKEN not in d
    assert TOKEN in agent.diff(new, "agent.conf", redact_secrets=False)
    assert agent.diff(agent, "agent.conf") == ""


def test_sha256_tracks_the_text(agent: HclConfig) -> None:
    import hashlib
    assert agent.sha256 == hashlib.sha256(AGENT_CONF.encode()).hexdigest()
    assert agent.without_setting("agent", "join_token").sha256 != agent.sha256


def test_guide_literal_phase4_agent_is_fixed_to_one_attestor() -> None:
    # The guide's Phase 4 agent.conf has both join_token and "tpm": SPIRE refuses it.
    text = AGENT_CONF.replace(
        '    KeyManager "disk" {',
        '    # Add TPM node attestor\n    NodeAttestor "tpm" {\n        plugin_data {\n'
        '            tpm_device_path = "/dev/tpmrm0"\n            hash_algorithm = "sha256"\n'
        '        }\n    }\n\n    KeyManager "disk" {')
    cfg = HclConfig.parse(text, "agent.conf")
    assert set(cfg.plugins("NodeAttestor")) == {"join_token", "tpm"}
    new = cfg.with_plugin("NodeAttestor", "tpm", 'plugin_data {\n  ca_path = "/ca"\n}', replacing="join_token")
    assert new.plugins("NodeAttestor") == {"tpm": {"plugin_data": {"ca_path": "/ca"}}}
    assert new.plugins("WorkloadAttestor") == cfg.plugins("WorkloadAttestor")
    assert "    # Add TPM node attestor" in new.text.splitlines()


def test_file_without_final_newline() -> None:
    text = 'plugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}'
    cfg = HclConfig.parse(text, "server.conf")
    new = cfg.with_plugin("NodeAttestor", "tpm_devid", SERVER_TPM_BODY)
    assert new.text.endswith("\n}") and opcodes(text, new.text) == {"insert"}
    assert '  NodeAttestor "tpm_devid" {\n    plugin_data {\n      devid_ca_path' in new.text
    assert new.without_plugin("NodeAttestor", "tpm_devid").text == text


def test_module_doctests() -> None:
    import doctest
    result = doctest.testmod(hclconfig)
    assert result.attempted > 0 and result.failed == 0
