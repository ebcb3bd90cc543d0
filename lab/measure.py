"""Simulated measurements on the lab's swtpm: what a firmware update or a reboot does to a PCR.

The library only reads PCRs (spire_migration.node.tpm.pcr_read); changing them is
the lab's business, to show the checks that a PCR moved.
"""

from __future__ import annotations

from tpm2_pytss import ESYS_TR, TPM2B_EVENT, TSS2_Exception

from .errors import LabError
from spire_migration.config.target import TPMSpec
from spire_migration.node.tpm import open_tpm


def _pcr(index: int) -> int:
    if not 0 <= index <= 23:
        raise LabError("PCR index out of range", expected="0..23", found=str(index))
    return ESYS_TR.PCR0 + index


def pcr_extend(spec: TPMSpec, index: int, data: bytes) -> None:
    """Extend PCR ``index`` with ``data`` in every allocated bank (TPM2_PCR_Event), as a measurement does."""
    with open_tpm(spec) as ectx:
        try:
            ectx.pcr_event(_pcr(index), TPM2B_EVENT(bytes(data)))
        except TSS2_Exception as exc:
            raise LabError(f"cannot extend PCR {index}", expected="TPM2_PCR_Event succeeds",
                           found=str(exc)) from exc


def pcr_reset(spec: TPMSpec, index: int) -> None:
    """Reset PCR ``index`` (resettable PCRs only, e.g. 16, the debug PCR), as after a reboot."""
    with open_tpm(spec) as ectx:
        try:
            ectx.pcr_reset(_pcr(index))
        except TSS2_Exception as exc:
            raise LabError(f"cannot reset PCR {index}", expected="TPM2_PCR_Reset succeeds",
                           found=str(exc)) from exc
