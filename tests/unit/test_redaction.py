"""Secrets never show: redaction by key name and pattern, the Secret type, safe reprs, the report hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spire_migration.verdict import CheckResult
from spire_migration.node.process import ProcInfo
from spire_migration.redact import redact, redact_argv, redact_obj
from spire_migration.secret import Secret

PROJECT = Path(__file__).resolve().parents[2]
TOKEN = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
PW = "Tpm-Owner-Pw-1"


# -- every leak form of issue 9 point 4 -----------------------------------------------------
@pytest.mark.parametrize("text, secret", [
    # argv list reprs (a ProcInfo, a Popen args list, assertion introspection of argv)
    (f"('/opt/spire/bin/spire-agent', 'run', '-joinToken', '{TOKEN}', '-config', 'a.conf')", TOKEN),
    (f"['spire-agent', 'run', \"-joinToken\", \"{TOKEN}\"]", TOKEN),
    (f"spire-agent run --joinToken={TOKEN}", TOKEN),
    # devid_password in JSON, dict-repr, HCL and logfmt form
    (json.dumps({"plugin_data": {"devid_password": PW}}), PW),
    (repr({"devid_password": PW, "hash": "sha256"}), PW),
    (f'devid_password = "{PW}"', PW),
    (f"devid_password={PW} other=1", PW),
    (f"DataStore(name='sql', password='{PW}', port=5432)", PW),
    (f"owner_hierarchy_password: '{PW}'", PW),
    # a heredoc
    (f'plugin_data {{\n  devid_password = <<EOF\n{PW}\nEOF\n}}', PW),
    (f'plugin_data {{\n  devid_password = <<-EOT\n    {PW}\n    EOT\n}}', PW),
    # a connection string (the whole value, and its password however it is spelt)
    (f'connection_string = "dbname=spire user=spire password={PW} host=db"', PW),
    (f'connection_string = "postgres://spire:{PW}@db:5432/spire"', PW),
    (f"database at postgres://spire:{PW}@db:5432/spire is down", PW),
    # escaped quotes inside the value: nothing of it may survive
    ('devid_password = "Tpm\\"Pw-1"', "Pw-1"),
    (json.dumps({"devid_password": 'Tpm"Pw-1'}), "Pw-1"),
    (repr({"devid_password": "Tpm'Pw-1"}), "Pw-1"),
    (repr(json.dumps({"devid_password": 'Tpm"Pw-1'})), "Pw-1"),
    # other names of secrets
    (f'"client_secret": "{PW}"', PW),
    (f"api_key='{PW}'", PW),
    (f'join_token = "{TOKEN}"', TOKEN),
    (f'{{"value": "{TOKEN}", "id": "x"}}', TOKEN),
    (f"spiffe://example.org/spire/agent/join_token/{TOKEN}", TOKEN),
])
def test_every_leak_form_is_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert "<redacted" in out, out


@pytest.mark.parametrize("text", [
    'join_token_file = "/run/spire/token"',
    "KeyManager \"disk\" {",
    'key_type = "ec-p256"',
    "-joinTokenFile /run/spire/t -config /etc/agent.conf",
    '"type": "spiffe_id", "value": "spiffe://example.org/agent"',
    "the join token: expected one",
    "newest = max(certs, key=lambda c: c.not_valid_after_utc)",
    "info = services.start_agent(self.t, join_token=None)",
])
def test_names_that_hold_no_secret_stay(text: str) -> None:
    assert redact(text) == text


def test_json_stays_json_and_dict_values_go_by_key() -> None:
    data = {"devid_password": "short", "nested": [{"token": "abc"}], "path": "/x"}
    out = redact_obj(data)
    assert out == {"devid_password": "<redacted>", "nested": [{"token": "<redacted>"}], "path": "/x"}
    json.loads(redact(json.dumps(data)))


def test_argv_is_redacted_element_by_element() -> None:
    argv = ("spire-agent", "run", "-joinToken", "whatever-it-is", "-password=pw1", "-config", "a.conf")
    assert redact_argv(argv) == ("spire-agent", "run", "-joinToken", "<redacted>", "-password=<redacted>",
                                 "-config", "a.conf")


# -- the Secret type and safe reprs -------------------------------------------------------------
def test_a_secret_never_prints_itself() -> None:
    s = Secret("a-very-secret-value-1")
    for shown in (repr(s), str(s), f"{s}", "%s" % s, repr([s]), repr({"t": s})):
        assert "a-very-secret-value-1" not in shown, shown
    assert s.reveal() == "a-very-secret-value-1"
    assert "a-very-secret-value-1" not in redact("leaked a-very-secret-value-1 here")   # registered


def test_procinfo_repr_hides_the_token() -> None:
    info = ProcInfo(42, ("/bin/spire-agent", "run", "-joinToken", "unregistered-token-9", "-config", "a"), 1.0)
    assert "unregistered-token-9" not in repr(info) and "unregistered-token-9" not in str(info)
    assert "unregistered-token-9" not in info.command
    assert info.argv[3] == "unregistered-token-9"   # the real argv is still there for the code


def test_checkresult_repr_hides_evidence_secrets() -> None:
    r = CheckResult("tpm_devid configured", False, "a password", "found", {"devid_password": PW,
                    "argv": ["spire-agent", "-joinToken", TOKEN]})
    assert PW not in repr(r) and TOKEN not in repr(r), repr(r)


# -- the report hook: one choke point before every reporter ---------------------------------------
def test_the_report_hook_redacts_every_report(tmp_path: Path) -> None:
    (tmp_path / "test_leak.py").write_text(textwrap.dedent(f'''
        import logging
        from spire_migration.redact import register_secret

        def test_leak(record_property):
            token = "{TOKEN}"
            register_secret(token)
            print("stdout says", token)
            import sys; print("stderr says", token, file=sys.stderr)
            logging.getLogger("x").warning("log says %s", token)
            record_property("argv", ["spire-agent", "-joinToken", token])
            argv = ("spire-agent", "-joinToken", token)
            assert "-joinToken" not in argv, f"started with {{argv}}"

        def test_unregistered():
            conf = 'devid_password = "{PW}"'
            assert conf == "", conf
    '''))
    junit, cucumber = tmp_path / "junit.xml", tmp_path / "cucumber.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "fixtures.reporting", "-p", "no:cacheprovider",
                           "-rA", "-l", "--junitxml", str(junit), "--cucumberjson", str(cucumber),
                           "-o", "log_cli=true", "-o", "junit_logging=all", str(tmp_path / "test_leak.py")],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "2 failed" in out, out
    for name, text in (("terminal", out), ("junit", junit.read_text()), ("cucumber", cucumber.read_text())):
        assert TOKEN not in text, f"{name}: token leaked"
        assert PW not in text, f"{name}: password leaked"
    assert "stdout says &lt;redacted" in junit.read_text()   # captured output went through, redacted
    for path in (junit, cucumber):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
