"""PACS side of the reference Source DRIMbox: C-FIND at IMAGE level, and the IOCM C-STORE SCP.

Its own DICOM networking (pynetdicom), as the PoC does (drimbox-spec §4.2): Study Root C-FIND with
QueryRetrieveLevel IMAGE on the StudyInstanceUID, returning the keys the KOS and the consistency
checks need; a C-STORE SCP receiving IOCM rejection notes (KOS with a rejection title).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from simulators.drimbox.source_kos import ImageRef

log = logging.getLogger("drimbox.source.pacs")

#: Key Object Document titles of IOCM rejection notes (CID 7011)
REJECTION_TITLES = {"113001", "113037", "113038", "113039"}


class PacsError(RuntimeError):
    """The PACS could not be queried (association refused, C-FIND failed)."""


def _nodelay(event: Any) -> None:
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


@dataclass
class StudyOnPacs:
    """What the PACS holds for a study: its images and the study-level attributes of the first answer."""

    images: list[ImageRef] = field(default_factory=list)
    accession_numbers: set[str] = field(default_factory=set)
    patient_ids: set[str] = field(default_factory=set)
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""


def find_images(host: str, port: int, called_aet: str, calling_aet: str, study_uid: str,
                timeout_s: float = 10.0) -> StudyOnPacs:
    """C-FIND IMAGE level on one study; PacsError when the PACS cannot answer."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)])
    if not assoc.is_established:
        raise PacsError(f"association DICOM avec {called_aet}@{host}:{port} refusée ou impossible")
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    for keyword in ("SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "SeriesNumber", "Modality",
                    "SeriesDescription", "AccessionNumber", "PatientID", "StudyDate", "StudyTime", "StudyDescription",
                    "StudyID", "ReferringPhysicianName"):
        setattr(query, keyword, "")
    out = StudyOnPacs()
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError("C-FIND sans réponse (délai dépassé ou association interrompue)")
            if code in (0xFF00, 0xFF01) and identifier is not None:
                out.images.append(ImageRef(
                    study_uid=study_uid, series_uid=str(identifier.get("SeriesInstanceUID", "")),
                    sop_uid=str(identifier.get("SOPInstanceUID", "")), sop_class_uid=str(identifier.get("SOPClassUID", "")),
                    instance_number=_int(identifier.get("InstanceNumber")), series_number=_int(identifier.get("SeriesNumber")),
                    modality=str(identifier.get("Modality", "")), series_description=str(identifier.get("SeriesDescription", ""))))
                out.accession_numbers.add(str(identifier.get("AccessionNumber", "") or ""))
                out.patient_ids.add(str(identifier.get("PatientID", "") or ""))
                if not out.study_date:
                    out.study_date = str(identifier.get("StudyDate", "") or "")
                    out.study_time = str(identifier.get("StudyTime", "") or "")
                    out.study_description = str(identifier.get("StudyDescription", "") or "")
                    out.study_id = str(identifier.get("StudyID", "") or "")
                    out.referring_physician = str(identifier.get("ReferringPhysicianName", "") or "")
            elif code != 0x0000:
                raise PacsError(f"C-FIND en échec (statut 0x{code:04X})")
    finally:
        assoc.release()
    return out


def find_study_uids(host: str, port: int, called_aet: str, calling_aet: str, timeout_s: float = 10.0) -> list[str]:
    """Every StudyInstanceUID the PACS holds (C-FIND STUDY level, universal matching). Mutant
    cov2-src-study-uid-prefix only: the reference looks a study up by its exact UID."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        raise PacsError(f"association DICOM avec {called_aet}@{host}:{port} refusée ou impossible")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    out: list[str] = []
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if getattr(status, "Status", None) in (0xFF00, 0xFF01) and identifier is not None:
                out.append(str(identifier.get("StudyInstanceUID", "")))
    finally:
        assoc.release()
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class IocmScp:
    """C-STORE SCP for IOCM rejection notes; on_rejection(study_uid, rejected SOP UIDs) runs in a thread."""

    def __init__(self, aet: str, host: str, port: int, on_rejection: Callable[[str, list[str]], None]):
        self.aet, self.host, self.port = aet, host, port
        self.on_rejection = on_rejection
        self._server = None

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception:  # noqa: BLE001 - undecodable dataset
            return 0xC210
        concept = ds.get("ConceptNameCodeSequence")
        code = str(concept[0].get("CodeValue", "")) if concept else ""
        if str(ds.get("SOPClassUID", "")) != "1.2.840.10008.5.1.4.1.1.88.59" or code not in REJECTION_TITLES:
            log.info("IOCM: object stored but not a rejection note (title %s), ignored", code or "none")
            return 0x0000
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
            uids = [str(ref.ReferencedSOPInstanceUID) for se in study.get("ReferencedSeriesSequence", [])
                    for ref in se.get("ReferencedSOPSequence", [])]
            study_uid = str(study.get("StudyInstanceUID", ""))
            threading.Thread(target=self.on_rejection, args=(study_uid, uids), daemon=True,
                             name="iocm-rejection").start()
        return 0x0000

    def start(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import KeyObjectSelectionDocumentStorage, Verification

        ae = AE(ae_title=self.aet)
        ae.add_supported_context(KeyObjectSelectionDocumentStorage)
        ae.add_supported_context(Verification)
        self._server = ae.start_server((self.host, self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, _nodelay)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
