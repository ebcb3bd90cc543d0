"""spire_migration.node.tpm and lab.devid against a real swtpm (needs swtpm + swtpm-tools)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from lab import swtpm
from lab.devid import provision_devid
from lab.measure import pcr_extend
from spire_migration.errors import TPMError
from spire_migration.config.target import TPMSpec
from spire_migration.node.tpm import (
    check_devid_matches_tpm, devid_agent_id, ek_cert_chains_to, flush_transients,
    open_tpm, pcr_read, probe,
)


def _start_tpm(base: Path, ca_dir: Path) -> Path:
    state = base / "tpm"
    swtpm.provision(state, ca_dir)
    swtpm.start(state)
    return state


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ca")


@pytest.fixture(scope="module")
def tpm_state(tmp_path_factory, ca_dir) -> Path:
    state = _start_tpm(tmp_path_factory.mktemp("swtpm"), ca_dir)
    yield state
    swtpm.stop(state)


@pytest.fixture
def spec(tpm_state) -> TPMSpec:
    return TPMSpec(device=swtpm.sock_path(tpm_state))


@pytest.fixture(scope="module")
def devid(tmp_path_factory, tpm_state, ca_dir):
    return provision_devid(swtpm.sock_path(tpm_state), tmp_path_factory.mktemp("devid"),
                           ca_dir, "node-1")


def test_swtpm_lifecycle(tmp_path, ca_dir):
    state = _start_tpm(tmp_path, ca_dir)
    assert swtpm.is_running(state)
    pid = int((state / "swtpm.pid").read_text())
    swtpm.stop(state)
    assert not swtpm.is_running(state)
    assert not swtpm._alive(pid)  # gone, or a zombie until init reaps it
    swtpm.stop(state)  # idempotent


def test_probe_reports_tpm20_sha256_and_ek_cert(spec, tpm_state, ca_dir):
    info = probe(spec)
    assert info.family == "2.0"
    assert info.manufacturer
    assert "sha256" in info.pcr_banks and "sha1" in info.pcr_banks
    assert info.ek_cert_der and info.ek_cert_der[0] == 0x30
    assert info.ek_present and info.ek_matches_cert
    assert info.kind == "socket" and info.path == swtpm.sock_path(tpm_state)
    assert info.owner_uid == os.getuid() and info.mode is not None
    assert ek_cert_chains_to(info.ek_cert_der, swtpm.endorsement_ca_path(ca_dir))
    assert not ek_cert_chains_to(info.ek_cert_der, ca_dir / "swtpm-localca-rootca-cert.pem")


def test_pcr_extend_changes_pcr_read(spec):
    before = pcr_read(spec, "sha256", [16])[16]
    pcr_extend(spec, 16, b"lab: simulated measurement")
    after = pcr_read(spec, "sha256", [16])[16]
    assert after != before
    expected = hashlib.sha256(bytes.fromhex(before)
                              + hashlib.sha256(b"lab: simulated measurement").digest())
    assert after == expected.hexdigest()
    assert len(pcr_read(spec)) == 24


def test_devid_matches_tpm(spec, devid):
    check_devid_matches_tpm(spec, devid.cert, devid.pub, devid.priv)
    assert flush_transients(spec) == 0  # everything was flushed
    for path in (devid.cert, devid.priv, devid.pub):
        assert path.stat().st_mode & 0o777 == 0o600
    assert devid.ca_cert.stat().st_mode & 0o777 == 0o644
    agent_id = devid_agent_id(devid.cert, "example.org")
    assert agent_id.startswith("spiffe://example.org/spire/agent/tpm_devid/")
    assert len(agent_id.rsplit("/", 1)[1]) == 40


def test_cert_from_another_key_fails(spec, devid, tmp_path, ca_dir, tpm_state):
    other = provision_devid(swtpm.sock_path(tpm_state), tmp_path, ca_dir, "node-2")
    with pytest.raises(TPMError, match="not for the DevID key blob"):
        check_devid_matches_tpm(spec, other.cert, devid.pub, devid.priv)


def test_blob_from_another_tpm_fails(spec, tmp_path, ca_dir):
    other_state = _start_tpm(tmp_path, ca_dir)
    try:
        other = provision_devid(swtpm.sock_path(other_state), tmp_path / "devid", ca_dir, "x")
    finally:
        swtpm.stop(other_state)
    with pytest.raises(TPMError, match="does not load in this TPM"):
        check_devid_matches_tpm(spec, other.cert, other.pub, other.priv)
    assert flush_transients(spec) == 0


def test_tpm2_tools_blob_format_is_refused(spec, devid, tmp_path):
    prefixed = tmp_path / "devid.priv"
    raw = devid.priv.read_bytes()
    prefixed.write_bytes(len(raw).to_bytes(2, "big") + raw)
    with pytest.raises(TPMError, match="size prefix"):
        check_devid_matches_tpm(spec, devid.cert, devid.pub, prefixed)


def test_dead_socket_raises(tmp_path):
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()  # the file stays, nobody listens
    with pytest.raises(TPMError) as err:
        with open_tpm(TPMSpec(device=dead)):
            pass
    assert str(dead) in str(err.value) and "unix socket" in str(err.value)
    with pytest.raises(TPMError, match="no such file"):
        probe(TPMSpec(device=tmp_path / "missing.sock"))
