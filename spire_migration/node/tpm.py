"""The TPM probe, through tpm2-pytss (no text scraping of tpm2-tools output).

Works on a character device (``/dev/tpmrm0``) or an swtpm socket, whichever
:meth:`TPMSpec.tcti_config` names. Every opening is short-lived and every
transient object is flushed: an swtpm socket serves one client at a time and
its few transient slots are shared with SPIRE's agent.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spire_migration.errors import TPMError
from spire_migration.node.spiffe_ids import agent_id_prefix
from spire_migration.config.target import TPMSpec

# ESYS logs harmless ERROR lines (e.g. optional EK template indices): silence them.
os.environ.setdefault("TSS2_LOG", "all+NONE")

from cryptography import x509  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from tpm2_pytss import (  # noqa: E402
    ESAPI, ESYS_TR, TPM2_ALG, TPM2_CAP, TPM2_RC, TPM2_HC,
    TPM2B_PRIVATE, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMA_OBJECT, TPMT_PUBLIC,
    TCTILdr, TSS2_Exception,
)
from tpm2_pytss.internal.templates import ek_template  # noqa: E402

EK_CERT_NV_INDEX = 0x01C00002
BANK_NAMES = {TPM2_ALG.SHA1: "sha1", TPM2_ALG.SHA256: "sha256", TPM2_ALG.SHA384: "sha384",
              TPM2_ALG.SHA512: "sha512", TPM2_ALG.SM3_256: "sm3_256"}
# TPM_PT_* values (Part 2, 6.13); tpm2-pytss lacks some of them.
_PT_FAMILY, _PT_MANUFACTURER, _PT_FW1, _PT_FW2 = 0x100, 0x105, 0x10B, 0x10C
_TPM_PT_NV_BUFFER_MAX = 0x12C

#: Attributes SPIRE's DevID key carries (TCG "TPM 2.0 Keys for DevID", 7.3.4.1).
DEVID_ATTRIBUTES = (TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                    | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH)
_SRK_ATTRIBUTES = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                   | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED
                   | TPMA_OBJECT.DECRYPT)


@dataclass
class TPMInfo:
    """What :func:`probe` found."""

    family: str
    manufacturer: str
    firmware_version: str
    pcr_banks: list[str]
    ek_cert_der: bytes | None
    ek_present: bool
    #: the EK re-created from the default RSA template has the EK cert's key (None: no cert)
    ek_matches_cert: bool | None
    path: Path | None
    kind: str
    owner_uid: int | None = None
    owner_gid: int | None = None
    mode: int | None = None
    notes: list[str] = field(default_factory=list)

    def attestation_problems(self) -> list[str]:
        """What keeps this TPM from SPIRE's TPM attestation (empty when nothing does)."""
        problems = []
        if self.family != "2.0":
            problems.append(f"TPM family {self.family}, not 2.0")
        if "sha256" not in self.pcr_banks:
            problems.append(f"no sha256 PCR bank (banks: {self.pcr_banks})")
        if self.ek_cert_der is None:
            problems.append("no EK certificate in NV 0x01c00002")
        if not self.ek_present:
            problems.append("the EK cannot be created from the TCG default template")
        return problems


# ---------------------------------------------------------------- opening

def _path_and_kind(spec: TPMSpec) -> tuple[Path | None, str]:
    name, conf = spec.tcti_config()
    if name == "device":
        return Path(conf or "/dev/tpm0"), "device"
    opts = dict(part.partition("=")[::2] for part in conf.split(",") if part)
    if name == "swtpm" and "path" in opts:
        return Path(opts["path"]), "socket"
    if name == "swtpm" and not opts and conf and "=" not in conf:
        return Path(conf), "socket"
    return None, "socket" if name in ("swtpm", "mssim") else name


def _describe(path: Path) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    kind = ("character device" if stat.S_ISCHR(st.st_mode) else "unix socket"
            if stat.S_ISSOCK(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode)
            else "regular file" if stat.S_ISREG(st.st_mode) else "other file")
    return f"{kind}, uid={st.st_uid} gid={st.st_gid} mode={stat.S_IMODE(st.st_mode):04o}"


@contextmanager
def open_tpm(spec: TPMSpec) -> Iterator[ESAPI]:
    """Open the TPM as an ESAPI context, closed (and the connection released) on exit."""
    name, conf = spec.tcti_config()
    path, kind = _path_and_kind(spec)
    if path is not None:
        ok = (path.is_char_device() if kind == "device" else path.is_socket())
        if not ok:
            raise TPMError(f"no TPM at {path}",
                           expected="a TPM character device" if kind == "device"
                           else "a listening swtpm unix socket",
                           found=_describe(path),
                           remedy="check [tpm] device in the target, or start the TPM/swtpm")
    try:
        tcti = TCTILdr(name, conf)
    except TSS2_Exception as exc:
        where = path if path is not None else f"{name}:{conf}"
        found = _describe(path) if path is not None else ""
        raise TPMError(f"cannot connect to the TPM at {where}",
                       expected=f"a {kind} that answers TPM commands",
                       found=f"{found}; {exc}" if found else str(exc),
                       remedy="start swtpm / the TPM resource manager, or fix [tpm] device"
                       ) from exc
    try:
        ectx = ESAPI(tcti)
    except TSS2_Exception as exc:
        tcti.close()
        raise TPMError(f"the TPM at {path or conf} does not answer",
                       expected="TPM 2.0 ESAPI initialisation", found=str(exc)) from exc
    try:
        yield ectx
    finally:
        ectx.close()
        tcti.close()


# ---------------------------------------------------------------- probe

def _properties(ectx: ESAPI, first: int, count: int) -> dict[int, int]:
    _, data = ectx.get_capability(TPM2_CAP.TPM_PROPERTIES, first, count)
    return {int(p.property): int(p.value) for p in data.data.tpmProperties}


def _chars(value: int) -> str:
    return value.to_bytes(4, "big").rstrip(b"\0").decode("ascii", "replace").strip()


def _pcr_banks(ectx: ESAPI) -> list[str]:
    _, data = ectx.get_capability(TPM2_CAP.PCRS, 0, 1)
    banks = []
    for sel in data.data.assignedPCR:
        if any(bytes(sel.pcrSelect)[: sel.sizeofSelect]):
            banks.append(BANK_NAMES.get(TPM2_ALG(sel.hash), f"0x{int(sel.hash):04x}"))
    return banks


def _der_trim(blob: bytes) -> bytes:
    """Drop trailing bytes after one DER element (some TPMs pad the NV index)."""
    if len(blob) < 2 or blob[0] != 0x30:
        return blob
    n = blob[1]
    if n < 0x80:
        return blob[: 2 + n]
    k = n & 0x7F
    return blob[: 2 + k + int.from_bytes(blob[2: 2 + k], "big")]


def _nv_read(ectx: ESAPI, index: int) -> bytes | None:
    try:
        nvh = ectx.tr_from_tpmpublic(index)
    except TSS2_Exception as exc:
        if exc.rc & 0xBF == TPM2_RC.HANDLE:  # TPM_RC_HANDLE for any handle/parameter number
            return None
        raise
    try:
        nvpub, _ = ectx.nv_read_public(nvh)
        size = nvpub.nvPublic.dataSize
        chunk = _properties(ectx, _TPM_PT_NV_BUFFER_MAX, 1).get(_TPM_PT_NV_BUFFER_MAX, 512)
        out = b""
        while len(out) < size:
            out += bytes(ectx.nv_read(nvh, min(chunk, size - len(out)), len(out),
                                      auth_handle=nvh))
        return out
    finally:
        ectx.tr_close(nvh)


def _create_ek(ectx: ESAPI) -> TPM2B_PUBLIC:
    """Create (and flush) the EK from the TCG default RSA template, as SPIRE does."""
    template = TPM2B_PUBLIC(publicArea=ek_template.lookup("EK-RSA2048").template.publicArea)
    handle, pub, *_ = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT)
    ectx.flush_context(handle)
    return pub


def _same_key(a, b) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def _tpm_key(pub: TPMT_PUBLIC | TPM2B_PUBLIC):
    area = pub.publicArea if isinstance(pub, TPM2B_PUBLIC) else pub
    return serialization.load_der_public_key(TPM2B_PUBLIC(publicArea=area).to_der())


def probe(spec: TPMSpec) -> TPMInfo:
    """Family, manufacturer, firmware, allocated PCR banks, EK cert and EK of the TPM."""
    path, kind = _path_and_kind(spec)
    with open_tpm(spec) as ectx:
        props = _properties(ectx, _PT_FAMILY, 16)
        fam, v1, v2 = (props.get(k, 0) for k in (_PT_FAMILY, _PT_FW1, _PT_FW2))
        info = TPMInfo(
            family=_chars(fam),
            manufacturer=_chars(props.get(_PT_MANUFACTURER, 0)),
            firmware_version=f"{v1 >> 16}.{v1 & 0xFFFF}.{v2 >> 16}.{v2 & 0xFFFF}",
            pcr_banks=_pcr_banks(ectx), ek_cert_der=None, ek_present=False,
            ek_matches_cert=None, path=path, kind=kind)
        raw = _nv_read(ectx, EK_CERT_NV_INDEX)
        info.ek_cert_der = _der_trim(raw) if raw else None
        try:
            ek_pub = _create_ek(ectx)
            info.ek_present = True
        except TSS2_Exception as exc:
            ek_pub = None
            info.notes.append(f"EK (default RSA template) cannot be created: {exc}")
    if info.ek_cert_der and ek_pub is not None:
        try:
            cert = x509.load_der_x509_certificate(info.ek_cert_der)
            info.ek_matches_cert = _same_key(cert.public_key(), _tpm_key(ek_pub))
        except ValueError as exc:
            info.ek_matches_cert = False
            info.notes.append(f"EK certificate does not parse: {exc}")
    if path is not None:
        st = os.stat(path)
        info.owner_uid, info.owner_gid, info.mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
    return info


# ---------------------------------------------------------------- PCRs

def _bank_alg(bank: str) -> TPM2_ALG:
    for alg, name in BANK_NAMES.items():
        if name == bank.lower():
            return alg
    raise TPMError(f"unknown PCR bank {bank!r}", expected=" or ".join(BANK_NAMES.values()),
                   found=bank)


def pcr_read(spec: TPMSpec, bank: str = "sha256",
             indices: Iterable[int] = range(24)) -> dict[int, str]:
    """PCR values (hex) of one bank."""
    _bank_alg(bank)
    wanted = sorted(set(indices))
    result: dict[int, str] = {}
    with open_tpm(spec) as ectx:
        if bank.lower() not in _pcr_banks(ectx):
            raise TPMError(f"PCR bank {bank} is not allocated", expected=bank,
                           found=", ".join(_pcr_banks(ectx)) or "no bank")
        remaining = wanted
        while remaining:
            sel = f"{bank.lower()}:{','.join(map(str, remaining))}"
            _, out_sel, digests = ectx.pcr_read(sel)
            got: list[int] = []
            for s in out_sel:
                mask = bytes(s.pcrSelect)[: s.sizeofSelect]
                got += [i for i in range(len(mask) * 8) if mask[i // 8] >> (i % 8) & 1]
            if not got:
                break
            for i, d in zip(sorted(got), digests):
                result[i] = bytes(d).hex()
            remaining = [i for i in remaining if i not in result]
    return result


# ---------------------------------------------------------------- DevID

def _load_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TPMError(f"cannot read {path}", expected="a PEM certificate file",
                       found=exc.strerror) from exc
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise TPMError(f"{path} holds no certificate", expected="PEM (or DER) X.509",
                           found=str(exc)) from exc


def cert_sha1(cert_path: Path) -> str:
    """SHA-1 (hex) of the first certificate's DER in ``cert_path``."""
    cert = _load_certs(cert_path)[0]
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def devid_agent_id(cert_path: Path, trust_domain: str) -> str:
    """The agent ID SPIRE's tpm_devid attestor gives: ``.../spire/agent/tpm_devid/<sha1>``."""
    return devid_agent_id_of(_load_certs(cert_path)[0], trust_domain)


def devid_agent_id_of(cert: x509.Certificate, trust_domain: str) -> str:
    """:func:`devid_agent_id` of a loaded certificate."""
    return agent_id_prefix(trust_domain, "tpm_devid") + hashlib.sha1(
        cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def issued_by_any(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    """``cert`` is signed directly by one of ``cas``."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def srk_template(key_type: TPM2_ALG = TPM2_ALG.RSA) -> TPM2B_PUBLIC:
    """go-tpm-tools "SRK template high": storage key, AES-128-CFB, noDA, empty unique."""
    alg = "rsa2048:aes128cfb" if key_type == TPM2_ALG.RSA else "ecc256:aes128cfb"
    area = TPMT_PUBLIC.parse(alg, objectAttributes=_SRK_ATTRIBUTES, nameAlg="sha256")
    return TPM2B_PUBLIC(publicArea=area)


def create_srk(ectx: ESAPI, key_type: TPM2_ALG = TPM2_ALG.RSA) -> ESYS_TR:
    """Create the SRK (transient: the caller flushes it) under the owner hierarchy."""
    handle, *_ = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), srk_template(key_type),
                                     ESYS_TR.OWNER)
    return handle


def read_devid_blobs(pub_path: Path, priv_path: Path) -> tuple[TPMT_PUBLIC, TPM2B_PRIVATE]:
    """Parse SPIRE's blob files: TPMT_PUBLIC, and TPM2B_PRIVATE without its size prefix."""
    try:
        pub_raw, priv_raw = Path(pub_path).read_bytes(), Path(priv_path).read_bytes()
    except OSError as exc:
        raise TPMError(f"cannot read DevID blob {exc.filename}", expected="a readable file",
                       found=exc.strerror) from exc
    try:
        pub, used = TPMT_PUBLIC.unmarshal(pub_raw)
    except Exception as exc:  # tpm2-pytss raises TSS2_Exception or ValueError
        raise TPMError(f"{pub_path} is not a TPMT_PUBLIC", expected="marshalled TPMT_PUBLIC",
                       found=str(exc)) from exc
    if used != len(pub_raw):
        if len(pub_raw) >= 2 and int.from_bytes(pub_raw[:2], "big") == len(pub_raw) - 2:
            found = "a TPM2B_PUBLIC (2-byte size prefix, as tpm2-tools writes)"
        else:
            found = f"{len(pub_raw) - used} trailing bytes"
        raise TPMError(f"{pub_path} is not what SPIRE reads", expected="a bare TPMT_PUBLIC",
                       found=found, remedy="strip the 2-byte size prefix")
    if len(priv_raw) >= 2 and int.from_bytes(priv_raw[:2], "big") == len(priv_raw) - 2:
        raise TPMError(f"{priv_path} carries a TPM2B size prefix",
                       expected="TPM2B_PRIVATE without its 2-byte size (SPIRE's format)",
                       found="a 2-byte size prefix (tpm2-tools format)",
                       remedy="strip the first 2 bytes")
    return pub, TPM2B_PRIVATE(priv_raw)


def check_devid_matches_tpm(spec: TPMSpec, cert_path: Path, pub_path: Path,
                            priv_path: Path) -> None:
    """Raise TPMError unless the cert certifies the blob key and the blob loads under the SRK.

    This is the pre-migration check that the DevID files belong to the key in this TPM.
    """
    cert = _load_certs(cert_path)[0]
    pub, priv = read_devid_blobs(pub_path, priv_path)
    if not pub.objectAttributes & TPMA_OBJECT.SIGN_ENCRYPT:
        raise TPMError(f"{pub_path} is not a signing key", expected="sign attribute",
                       found=str(pub.objectAttributes))
    try:
        blob_key = _tpm_key(pub)
    except Exception as exc:
        raise TPMError(f"{pub_path} holds no usable public key", expected="RSA or ECC key",
                       found=str(exc)) from exc
    if not _same_key(cert.public_key(), blob_key):
        raise TPMError("the DevID certificate is not for the DevID key blob",
                       expected=f"{cert_path} certifies the key in {pub_path}",
                       found=f"cert key SHA-1 {_spki_sha1(cert.public_key())}, "
                             f"blob key SHA-1 {_spki_sha1(blob_key)}",
                       remedy="use the certificate issued for this DevID key")
    key_type = TPM2_ALG(pub.type)
    with open_tpm(spec) as ectx:
        srk = create_srk(ectx, key_type)
        try:
            handle = ectx.load(srk, priv, TPM2B_PUBLIC(publicArea=pub))
        except TSS2_Exception as exc:
            raise TPMError("the DevID key blob does not load in this TPM",
                           expected="TPM2_Load under the SRK (template high) succeeds",
                           found=str(exc),
                           remedy="the blobs were made on another TPM (or the owner "
                                  "hierarchy was cleared): provision a DevID on this TPM") from exc
        else:
            ectx.flush_context(handle)
        finally:
            ectx.flush_context(srk)


def _spki_sha1(key) -> str:
    return hashlib.sha1(key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
                        ).hexdigest()


# ---------------------------------------------------------------- EK

def ek_cert_chains_to(ek_der: bytes, ca_pem_path: Path) -> bool:
    """True when one certificate in ``ca_pem_path`` directly issued (and signed) the EK cert."""
    ek = x509.load_der_x509_certificate(_der_trim(ek_der))
    for ca in _load_certs(ca_pem_path):
        try:
            ek.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def flush_transients(spec: TPMSpec) -> int:
    """Flush every transient object left in the TPM (lab use); return how many."""
    with open_tpm(spec) as ectx:
        _, data = ectx.get_capability(TPM2_CAP.HANDLES, TPM2_HC.TRANSIENT_FIRST, 64)
        handles = list(data.data.handles)
        for h in handles:
            tr = ectx.tr_from_tpmpublic(int(h))
            ectx.flush_context(tr)
        return len(handles)
