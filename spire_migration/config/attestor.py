"""The Phase 4 node attestor profiles: their HCL and the checks on their inputs.

``tpm_devid`` is built into SPIRE (the default profile). ``tpm`` is the external
spire-tpm-plugin; it is configured and checked statically (it opens the TPM only
through /sys/class/tpm and /dev/tpmrm*, so it cannot run against an swtpm socket).
Neither knows the guide's ``hash_algorithm`` key, so it is never written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509

from spire_migration.node import tpm
from spire_migration.errors import ConfigError, TPMError
from spire_migration.config.hclconfig.render import render_body
from spire_migration.config.target import Target


def plugin_name(t: Target) -> str:
    return t.attestor.profile


def server_body(t: Target) -> str:
    """The server's TPM attestor body (HCL; every value quoted by ``render_body``)."""
    a = t.attestor
    if a.profile == "tpm_devid":
        return render_body({"plugin_data": {"devid_ca_path": str(a.devid_ca),
                                            "endorsement_ca_path": str(a.endorsement_ca)}})
    data = {"ca_path": str(a.ca_path), **({"hash_path": str(a.hash_path)} if a.hash_path else {})}
    return render_body({**_plugin_cmd(a.plugin_cmd_server, a.plugin_checksum_server), "plugin_data": data})


def agent_body(t: Target) -> str:
    """The agent's TPM attestor body (HCL; every value quoted by ``render_body``)."""
    a = t.attestor
    if a.profile == "tpm_devid":
        return render_body({"plugin_data": {
            "devid_cert_path": str(a.devid_cert), "devid_priv_path": str(a.devid_priv),
            "devid_pub_path": str(a.devid_pub), "tpm_device_path": str(t.tpm.device)}})
    return render_body({**_plugin_cmd(a.plugin_cmd_agent, a.plugin_checksum_agent), "plugin_data": {}})


def _plugin_cmd(cmd: Path, checksum: str) -> dict[str, str]:
    return {"plugin_cmd": str(cmd), **({"plugin_checksum": checksum} if checksum else {})}


def expected_agent_id(t: Target) -> str | None:
    """The agent ID the TPM attestor will give this node (known before migrating)."""
    if t.attestor.profile == "tpm_devid":
        return tpm.devid_agent_id(t.attestor.devid_cert, t.trust_domain)
    return None  # tpm plugin: sha256 of the EK public key, known after attestation


def _pem_bundle(path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found", expected=f"a PEM bundle at {path}", found="no such file",
                          remedy="set attestor paths in the target description") from exc
    except ValueError as exc:
        raise ConfigError(f"{what} is not a PEM certificate bundle", expected="PEM certificates",
                          found=f"{path}: {exc}") from exc
    return certs


def check_inputs(t: Target, sides: tuple[str, ...] = ("server", "agent")) -> list[str]:
    """Check every input of the attestor before any change; returns evidence lines.

    ``sides``: the server's inputs (the CA bundles it trusts), the agent's (DevID
    certificate and key blobs in this TPM, the EK certificate), or both; their
    cross-checks (the DevID's issuer, the EK certificate's chain) need both on one host.
    """
    a = t.attestor
    if a.profile == "tpm_devid":
        evidence = []
        if "server" in sides:
            ca = _pem_bundle(a.devid_ca, "DevID CA bundle (server devid_ca_path)")
            ek_ca = _pem_bundle(a.endorsement_ca, "endorsement CA bundle (server endorsement_ca_path)")
            evidence.append(f"DevID CA bundle ({len(ca)}) and endorsement CA bundle ({len(ek_ca)}) readable")
        if "agent" not in sides:
            return evidence
        leaf = _pem_bundle(a.devid_cert, "DevID certificate (agent devid_cert_path)")[0]
        for blob in (a.devid_pub, a.devid_priv):
            if not Path(blob).is_file():
                raise ConfigError("DevID key blob not found", expected=f"a TPM key blob at {blob}",
                                  found="no such file", remedy="provision the DevID, or fix the target")
        if "server" in sides and not any(leaf.issuer == c.subject for c in ca):
            raise ConfigError("the DevID certificate is not issued by the DevID CA bundle",
                              expected=f"issuer {leaf.issuer.rfc4514_string()} in {a.devid_ca}",
                              found=", ".join(c.subject.rfc4514_string() for c in ca))
        tpm.check_devid_matches_tpm(t.tpm, a.devid_cert, a.devid_pub, a.devid_priv)
        info = tpm.probe(t.tpm)
        if info.ek_cert_der is None:
            raise TPMError("the TPM has no EK certificate", expected="an RSA EK certificate in NV 0x01c00002",
                           found="none", remedy="provision the EK certificate (TPM vendor or swtpm_setup)")
        if "server" in sides and not tpm.ek_cert_chains_to(info.ek_cert_der, a.endorsement_ca):
            raise ConfigError("the EK certificate does not chain to the endorsement CA bundle",
                              expected=f"the EK certificate's direct issuer in {a.endorsement_ca}",
                              found=", ".join(c.subject.rfc4514_string() for c in ek_ca),
                              remedy="put the EK certificate's issuing CA (no intermediates) in endorsement_ca_path")
        return evidence + [f"DevID certificate sha1 {tpm.cert_sha1(a.devid_cert)} issued by "
                           f"{leaf.issuer.rfc4514_string()}",
                           "DevID key blobs load in this TPM and match the certificate",
                           "EK certificate present" + (", chains to the endorsement CA" if "server" in sides else
                                                       " (its chain is checked by the server at attestation)")]
    for exe in (a.plugin_cmd_server, a.plugin_cmd_agent):
        if not Path(exe).is_file():
            raise ConfigError("spire-tpm-plugin binary not found", expected=str(exe), found="no such file",
                              remedy="install spire-tpm-plugin, or use the tpm_devid profile")
    for exe, want in ((a.plugin_cmd_server, a.plugin_checksum_server), (a.plugin_cmd_agent, a.plugin_checksum_agent)):
        if want and hashlib.sha256(Path(exe).read_bytes()).hexdigest() != want:
            raise ConfigError("plugin checksum mismatch", expected=want, found=f"{exe} differs")
    if not Path(a.ca_path).exists() and not (a.hash_path and Path(a.hash_path).exists()):
        raise ConfigError("spire-tpm-plugin needs ca_path or hash_path", expected=f"{a.ca_path} or {a.hash_path}",
                          found="neither exists")
    return ["spire-tpm-plugin binaries present"]
