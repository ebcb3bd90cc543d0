"""One node, read through a view: what a testinfra host shows is what the checklists see."""

from __future__ import annotations

import base64
import datetime as dt
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_migration.node.view import FileStat, HostView
from spire_migration.node.facade import Node, Phase
from spire_migration.node.spiffe_ids import agent_kind, is_join_token_agent, is_tpm_agent
from spire_migration.config.target import Target

CONF = 'agent {{ data_dir = "/d" }}\nplugins {{\n{plugins}\n}}\n'
JT = 'NodeAttestor "join_token" { plugin_data {} }'
TPM = 'NodeAttestor "tpm_devid" { plugin_data { tpm_device_path = "/dev/tpmrm0" } }'


class FilesView(HostView):
    """A host that is only a dict of files."""

    name = "box"
    is_local = False

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read_bytes(self, path):
        return self.files.get(str(path))

    def stat(self, path):
        return FileStat(str(path), "regular file", 0, 0, "root", "root", 0o600) if str(path) in self.files else None

    def walk(self, root):
        return [s for p in self.files if p.startswith(str(root)) and (s := self.stat(p))]


def _svid_data(spiffe_id: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.PEM)
    return json.dumps({"svid": [base64.b64encode(der).decode()]}).encode()


def _node(plugins: str, agent_id: str | None) -> Node:
    t = Target.from_dict({"agent": {"config": "/c/agent.conf", "data_dir": "/d"}, "journal": {"dir": "/j"}})
    files = {"/c/agent.conf": CONF.format(plugins=plugins).encode()}
    if agent_id:
        files["/d/agent-data.json"] = _svid_data(agent_id)
    return Node(t, FilesView(files))


def test_phase_and_identity_come_from_the_host() -> None:
    jt = "spiffe://example.org/spire/agent/join_token/5b1e2c3d"
    tpm = "spiffe://example.org/spire/agent/tpm_devid/4f2a"
    assert _node(JT, jt).phase() is Phase.PHASE3
    assert _node(JT, None).phase() is Phase.PHASE3
    assert _node(TPM, tpm).agent_id() == tpm and _node(TPM, tpm).phase() is Phase.PHASE4
    assert _node(TPM, jt).phase() is Phase.TRANSITION
    broken = _node(TPM, tpm)
    broken.view.files["/c/agent.conf"] = b"plugins {"
    assert broken.phase() is Phase.UNKNOWN and broken.agent_config(missing_ok=True) is None
    assert _node(TPM, tpm).tpm_path() == ("/dev/tpmrm0", "/c/agent.conf tpm_device_path")


def test_journal_and_agent_process_read_through_the_host() -> None:
    node = _node(TPM, None)
    assert node.journal is None
    node = _node(TPM, None)
    node.view.files["/j/node-1/journal.json"] = json.dumps({"steps": {"guide_step_10": {"status": "done"}}}).encode()
    assert node.journal.done("guide_step_10") and node.journal.root == node.target.journal_root
    node.view.files.update({str(node.target.agent.pid_file): b"4242\n",
                            "/proc/4242/cmdline": b"/opt/spire/bin/spire-agent\0run\0-config\0a.conf\0",
                            "/proc/4242/stat": b"4242 (spire-agent) S " + b"0 " * 18 + b"500 0 0",
                            "/proc/stat": b"cpu 1 2 3\nbtime 1000\n"})
    proc = node.agent_proc()
    assert proc.pid == 4242 and proc.argv[1:] == ("run", "-config", "a.conf") and proc.started_at > 1000


def test_agent_kinds() -> None:
    assert agent_kind("spiffe://td/spire/agent/tpm/abc") == "tpm" and is_tpm_agent("spiffe://td/spire/agent/tpm/x")
    assert is_join_token_agent("spiffe://td/spire/agent/join_token/<redacted:12345678>")
    assert agent_kind("spiffe://td/spire/server") is None and agent_kind(None) is None
    assert agent_kind("spiffe://td/spire/agent//x") is None and not is_tpm_agent("spiffe://td/workload/tpm_devid/x")
