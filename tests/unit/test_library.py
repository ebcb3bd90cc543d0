"""Pure logic of the library: target, redaction, journal, processes, guide lint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spire_migration.node import process
from spire_migration.errors import JournalError, TargetError
from spire_migration.config.guide_lint import lint
from spire_migration.config.hclconfig import HclConfig
from spire_migration.records.journal import Journal
from spire_migration.redact import redact, redact_obj, register_secret
from spire_migration.config.target import Target

TD = "example.org"
OLD = "spiffe://example.org/spire/agent/join_token/1234abcd-0000-1111-2222-333344445555"

# -- target ---------------------------------------------------------------------
def test_target_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        Target.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("text, message", [
    ("trust_domain = ", "not valid TOML"),
    ("[server]\nconfgi = '/x'", "unknown key server.confgi"),
    ("[attestor]\nprofile = 'tpm2'", "unknown attestor profile"),
    ("[thresholds]\nsvid_fetch_ms = 'fast'", "wrong type"),
])
def test_target_invalid_content_names_the_problem(trusted_tmp, text, message):
    path = trusted_tmp / "t.toml"
    path.write_text(text)
    with pytest.raises(TargetError, match=message):
        Target.load(path)


def test_target_relative_paths_resolve_next_to_the_file(trusted_tmp):
    path = trusted_tmp / "t.toml"
    path.write_text("[agent]\nconfig = 'conf/agent.conf'\n[tpm]\ndevice = '/run/swtpm.sock'\n")
    t = Target.load(path)
    assert t.agent.config == trusted_tmp / "conf" / "agent.conf"
    assert t.tpm.tcti_config() == ("swtpm", "path=/run/swtpm.sock")
    assert Target().tpm.tcti_config() == ("device", "/dev/tpmrm0")


# -- redaction -------------------------------------------------------------------
def test_join_tokens_never_survive_redaction():
    token = "0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"
    register_secret(token)
    text = f"agent {OLD} started with -joinToken {token}; token={token}"
    out = redact(text)
    assert token not in out and "1234abcd-0000" not in out
    nested = redact_obj({"changes": [f"-joinToken {token}"], OLD: 1})
    assert token not in json.dumps(nested) and "1234abcd" not in json.dumps(nested)
    json.loads(json.dumps(nested))  # still valid JSON


# -- journal ---------------------------------------------------------------------
def test_backups_are_taken_once_and_checked(tmp_path):
    src = tmp_path / "agent.conf"
    src.write_text("phase 3\n")
    j = Journal(tmp_path / "j")
    path, created = j.backup_file("agent.conf", src)
    assert created and oct(path.stat().st_mode & 0o777) == "0o600"
    src.write_text("phase 4\n")
    _, created = j.backup_file("agent.conf", src)
    assert not created and path.read_text() == "phase 3\n"
    path.write_text("tampered\n")
    with pytest.raises(JournalError, match="altered"):
        j.verify_backup("agent.conf")
    path.unlink()
    with pytest.raises(JournalError, match="missing"):
        j.verify_backup("agent.conf")


def test_the_lock_stops_a_second_run(tmp_path):
    j = Journal(tmp_path / "j")
    with j.lock():
        with pytest.raises(JournalError, match="another run holds the lock"):
            with Journal(tmp_path / "j").lock():
                pass
    with j.lock():   # released
        pass


# -- processes -------------------------------------------------------------------
def test_stop_touches_only_the_exact_process(tmp_path):
    pid_file = tmp_path / "sleep.pid"
    info = process.start([sys.executable, "-c", "import time; time.sleep(60)"], log=tmp_path / "l",
                         pid_file=pid_file)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process.find(sys.executable, pid_file) == info
        assert process.find("spire-agent", pid_file) is None      # a pid only counts for its binary
        process.stop(info, pid_file=pid_file)
        assert process.proc_info(info.pid) is None and not pid_file.exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


# -- the guide's text on real SPIRE --------------------------------------------------
def test_lint_names_the_guides_configs_that_spire_refuses():
    server = HclConfig.parse('server {}\nplugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n'
                             '  NodeAttestor "tpm" {\n    plugin_data {\n      hash_algorithm = "sha256"\n    }\n  }\n}\n',
                             "server.conf")
    agent = HclConfig.parse('agent {}\nplugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n'
                            '  NodeAttestor "tpm_devid" {\n    plugin_data {}\n  }\n}\n', "agent.conf")
    keys = {f.key for f in lint(server, agent)}
    assert keys == {"tpm_builtin", "hash_algorithm", "agent_attestors"}
    assert [f.fixed_by_step4 for f in lint(None, agent)] == [True]
