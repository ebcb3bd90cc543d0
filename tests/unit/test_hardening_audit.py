"""Hardening and audit checks on fake host views and generated certificates."""

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_migration.checks import audit
from spire_migration.checks import hardening
from spire_migration.records import report
from spire_migration.node.view import FileStat, HostView
from spire_migration.node.facade import Node
from spire_migration.records.report import Run
from spire_migration.config.target import Target
from spire_migration.verdict import CheckResult

AGENT_CONF = '''agent { data_dir = "/d" }
plugins {
    NodeAttestor "tpm_devid" { plugin_data { tpm_device_path = "%s" } }
    KeyManager "disk" { plugin_data { directory = "/d" } }
}
'''


class FakeView(HostView):
    name = "fake"
    is_local = False

    def __init__(self, files: dict[str, bytes], stats: dict[str, FileStat]):
        self.files, self.stats = files, stats

    def read_bytes(self, path):
        return self.files.get(str(path))

    def stat(self, path):
        return self.stats.get(str(path))

    def walk(self, root):
        return [s for p, s in self.stats.items() if p.startswith(str(root))]


def _view(device: str, mode: int, kind: str = "unix socket", user: str = "root") -> tuple[FakeView, Target]:
    t = Target.from_dict({"agent": {"config": "/c/agent.conf"}})
    files = {"/c/agent.conf": (AGENT_CONF % device).encode(),
             "/etc/group": b"root:x:0:\ntss:x:101:alice\n", "/etc/passwd": b"root:x:0:0::/root:/bin/sh\n"}
    stats = {device: FileStat(device, kind, 0, 101 if kind == "character device" else 0, user,
                              "tss" if kind == "character device" else "root", mode)}
    return FakeView(files, stats), t


def test_world_writable_socket_fails_naming_path_mode_and_fix():
    view, t = _view("/run/swtpm.sock", 0o777)
    res = hardening.tpm_access_restricted(Node(t, view))
    assert not res.ok
    text = res.message()
    assert "/run/swtpm.sock" in text and "0777" in text and "chmod 0600 /run/swtpm.sock" in text


def test_restricted_socket_passes_and_group_members_count():
    view, t = _view("/run/swtpm.sock", 0o700)
    assert hardening.tpm_access_restricted(Node(t, view)).ok
    view, t = _view("/dev/tpmrm0", 0o660, kind="character device")
    res = hardening.tpm_access_restricted(Node(t, view))
    assert not res.ok and "alice" in res.found      # group tss has another member


def test_raw_tpm_device_is_not_the_resource_manager():
    view, t = _view("/dev/tpm0", 0o600, kind="character device")
    res = hardening.resource_manager_preferred(Node(t, view))
    assert not res.ok and "/dev/tpmrm0" in res.remedy
    view, t = _view("/dev/tpmrm0", 0o600, kind="character device")
    assert hardening.resource_manager_preferred(Node(t, view)).ok


def test_keymanager_and_join_token_through_a_view():
    view, t = _view("/run/swtpm.sock", 0o600)
    assert audit.agent_keymanager_disk(Node(t, view)).ok
    assert audit.no_join_token_left(Node(t, view)).ok
    view.files["/c/agent.conf"] = view.files["/c/agent.conf"].replace(b'agent { data_dir = "/d" }',
                                                                      b'agent {\n data_dir = "/d"\n join_token = "abc"\n}')
    res = audit.no_join_token_left(Node(t, view))
    assert not res.ok and "agent.join_token" in res.found


def _cert(subject, issuer, key, issuer_key, days=365):
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .sign(issuer_key, hashes.SHA256()))


def test_chain_to_follows_intermediates_and_checks_signatures():
    root_k, mid_k, leaf_k, other_k = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert("root", "root", root_k, root_k)
    mid = _cert("mid", "root", mid_k, root_k)
    leaf = _cert("leaf", "mid", leaf_k, mid_k)
    assert audit.chain_to(leaf, [mid], [root]) == [leaf, mid, root]
    forged = _cert("leaf", "mid", leaf_k, other_k)   # right issuer name, wrong signature
    assert audit.chain_to(forged, [mid], [root]) is None


def test_go_durations():
    assert audit.go_duration_s("168h") == 604800 and audit.go_duration_s("90m") == 5400


def test_markdown_report_has_id_evidence_warning_and_remedy(tmp_path: Path):
    run = Run(started=0)
    run.scenarios["n1"] = {"name": "t", "title": "Restrict TPM access", "status": "failed", "reason": "x",
                           "tags": ["hardening_1", "validate"], "host": "local"}
    bad = CheckResult("TPM access", False, "0600", "0777", {"path": "/run/s.sock",
                      "agent": "spiffe://example.org/spire/agent/join_token/0d1f5c2e-aaaa-bbbb-cccc-1234567890ab"},
                      "chmod 0600 /run/s.sock")
    warn = CheckResult("other", True, "a", "b", {}, "", ["look at this"])
    run.checks["n1"] = [bad, warn]
    out = tmp_path / "r.md"
    report.write_markdown(run, out)
    text = out.read_text()
    assert "| hardening_1 | local | Restrict TPM access | failed |" in text
    assert "remedy: chmod 0600 /run/s.sock" in text and "warning: look at this" in text
    assert "passed with warnings" in text and "0d1f5c2e-aaaa" not in text
    props = dict(report.check_properties(bad))
    assert "0d1f5c2e-aaaa" not in props["TPM access | evidence"]
