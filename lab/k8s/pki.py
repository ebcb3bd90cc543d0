"""The Kubernetes lab's own PKI: a CA, the API server's serving cert, client and node certs,
the service-account key pair, and kubeconfigs that point at them."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from .files import write_file

#: Client identities: file stem -> (CN, organisations). RBAC bootstrap roles exist for each.
CLIENTS = {"admin": ("kubernetes-admin", ("system:masters",)),
           "controller-manager": ("system:kube-controller-manager", ()),
           "scheduler": ("system:kube-scheduler", ()),
           "kwok": ("kwok-controller", ("system:masters",))}
#: First address of the service range: the `kubernetes` Service's ClusterIP.
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"


def new_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(ca: bool):
    from cryptography import x509
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def issue_cert(subject_cn: str, key, *, ca=None, ca_key=None, orgs: tuple[str, ...] = (),
               server: bool = False, client: bool = False, ips: tuple[str, ...] = (),
               dns: tuple[str, ...] = ()):
    """A self-signed CA certificate (no *ca*), or a leaf signed by *ca*/*ca_key* for a year."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject_cn))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(ca.subject if ca is not None else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=365)))
    if ca is None:
        b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(_key_usage(ca=True), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(_key_usage(ca=False), critical=True)
              .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                             critical=False))
        sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key if ca_key is not None else key, hashes.SHA256())


def _write_pair(pki: Path, stem: str, key, cert) -> None:
    write_file(pki / f"{stem}.key", pem_key(key), 0o600)
    write_file(pki / f"{stem}.crt", pem_cert(cert), 0o644)


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert (127.0.0.1), client certs, service-account key pair (once)."""
    from cryptography.hazmat.primitives import serialization

    if (pki / "ca.crt").exists() and all((pki / f"{c}.crt").exists() for c in CLIENTS):
        return
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = new_key()
    ca = issue_cert("spire-migration-lab-kubernetes-ca", ca_key)
    _write_pair(pki, "ca", ca_key, ca)
    key = new_key()
    _write_pair(pki, "apiserver", key, issue_cert(
        "kube-apiserver", key, ca=ca, ca_key=ca_key, server=True, ips=("127.0.0.1", SERVICE_IP),
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local")))
    for stem, (cn, orgs) in CLIENTS.items():
        key = new_key()
        _write_pair(pki, stem, key, issue_cert(cn, key, ca=ca, ca_key=ca_key, orgs=orgs, client=True))
    sa = new_key()
    write_file(pki / "sa.key", pem_key(sa), 0o600)
    write_file(pki / "sa.pub", sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)


def node_identity(pki: Path, node: str, out: Path) -> tuple[Path, Path]:
    """A node client cert (CN=system:node:<node>, O=system:nodes) signed by the lab's Kubernetes CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = new_key()
    _write_pair(out, "node", key, issue_cert(f"system:node:{node}", key, ca=ca, ca_key=ca_key,
                                             orgs=("system:nodes",), client=True))
    return out / "node.crt", out / "node.key"


def kubeconfig(server: str, ca_file: Path, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig with file paths, not embedded data: the files stay under the lab root."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
    certificate-authority: {ca_file}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: lab
  context:
    cluster: lab
    user: {user}
    namespace: default
current-context: lab
"""


def client_kubeconfig(server: str, pki: Path, stem: str) -> str:
    """The kubeconfig of one of :data:`CLIENTS`."""
    return kubeconfig(server, pki / "ca.crt", pki / f"{stem}.crt", pki / f"{stem}.key", stem)
