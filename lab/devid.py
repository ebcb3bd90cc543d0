"""Provision a DevID in the lab TPM the way SPIRE's tpm_devid agent plugin reads it.

The DevID key is an RSA-2048 RSASSA-SHA256 signing key (sign, fixedTPM,
fixedParent, sensitiveDataOrigin, userWithAuth; empty password) created under
the SRK from the go-tpm-tools "SRK template high" in the owner hierarchy. The
blobs are written in SPIRE's format: ``devid.pub`` = marshalled TPMT_PUBLIC,
``devid.priv`` = TPM2B_PRIVATE without its 2-byte size. A DevID CA private to
``ca_dir`` issues the leaf certificate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tpm2_pytss import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMT_PUBLIC, TSS2_Exception

from .errors import LabError
from spire_migration.errors import TPMError
from spire_migration.fileio import write_file
from spire_migration.config.target import TPMSpec
from spire_migration.node.tpm import DEVID_ATTRIBUTES, create_srk, devid_agent_id, open_tpm

__all__ = ["DevIDFiles", "provision_devid", "devid_ca", "devid_agent_id"]

CA_CERT = "devid-ca-cert.pem"
CA_KEY = "devid-ca-key.pem"


@dataclass(frozen=True)
class DevIDFiles:
    """The files SPIRE needs: agent (cert, priv, pub) and server (ca_cert)."""

    cert: Path
    priv: Path
    pub: Path
    ca_cert: Path


def devid_template() -> TPM2B_PUBLIC:
    """go-tpm-tools AKTemplateRSA with SPIRE's DevID attributes."""
    area = TPMT_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=DEVID_ATTRIBUTES,
                             nameAlg="sha256")
    return TPM2B_PUBLIC(publicArea=area)


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signing_key: ec.EllipticCurvePrivateKey, *,
                 days: int, ca: bool, key_id: x509.ExtensionType) -> x509.Certificate:
    """A certificate valid from 5 minutes ago for ``days``, signed with SHA-256 by ``signing_key``:
    a CA's (signs certificates and CRLs, no CA below it) or a leaf's (signs data only);
    ``key_id`` is its key identifier extension (subject's for a CA, authority's for a leaf)."""
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(key_id, critical=False)
            .sign(signing_key, hashes.SHA256()))


def devid_ca(ca_dir: Path) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The lab's self-signed DevID CA in ``ca_dir`` (created once, then reused)."""
    ca_dir = Path(ca_dir)
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return cert_path, key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spire-migration lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "lab DevID CA")])
    cert = _certificate(name, name, key.public_key(), key, days=3650, ca=True,
                        key_id=x509.SubjectKeyIdentifier.from_public_key(key.public_key()))
    write_file(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), mode=0o600)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key, cert


def provision_devid(sock: Path, out_dir: Path, ca_dir: Path, common_name: str) -> DevIDFiles:
    """Create a DevID key in the TPM at ``sock`` and a certificate for it (CN=common_name)."""
    out_dir = Path(out_dir)
    spec = TPMSpec(device=Path(sock), tcti=f"swtpm:path={sock}")
    try:
        with open_tpm(spec) as ectx:
            srk = create_srk(ectx)
            try:
                priv, pub, *_ = ectx.create(srk, TPM2B_SENSITIVE_CREATE(), devid_template())
            finally:
                ectx.flush_context(srk)
    except TSS2_Exception as exc:
        raise TPMError("cannot create the DevID key", expected="TPM2_Create under the SRK",
                       found=str(exc)) from exc
    priv_bytes = priv.marshal()[2:]
    if len(priv_bytes) != priv.size:
        raise LabError("unexpected TPM2B_PRIVATE encoding", expected=f"{priv.size} bytes",
                       found=f"{len(priv_bytes)} bytes")
    pub_bytes = pub.publicArea.marshal()
    ca_cert_path, ca_key, ca_cert = devid_ca(ca_dir)
    devid_key = serialization.load_der_public_key(pub.to_der())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _certificate(subject, ca_cert.subject, devid_key, ca_key, days=825, ca=False,
                        key_id=x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()))
    files = DevIDFiles(cert=out_dir / "devid.crt.pem", priv=out_dir / "devid.priv",
                       pub=out_dir / "devid.pub", ca_cert=ca_cert_path)
    write_file(files.priv, priv_bytes, mode=0o600)
    write_file(files.pub, pub_bytes, mode=0o600)
    write_file(files.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    return files
