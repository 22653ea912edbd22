"""The harness as PACS for IOCM: build an IOCM rejection note and C-STORE it to the DUT.

An Imaging Object Change Management rejection note is a Key Object Selection Document whose title is
a rejection reason (CID 7011, e.g. (113001, DCM, "Rejected for Quality Reasons")) and whose evidence
lists the rejected instances (IHE RAD IOCM). The PACS sends it to the DRIMbox's C-STORE SCP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from drimcheck.limits import MAX_DICOM_PDU, too_large
from simulators.pacs import NODELAY_HANDLER
from simulators.pacs.studies import UID_PREFIX, SyntheticStudy

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
QUALITY = ("113001", "DCM", "Rejected for Quality Reasons")


def rejection_note(study: SyntheticStudy, rejected: list[tuple[str, str, str]], *,
                   reason: tuple[str, str, str] = QUALITY) -> Dataset:
    """rejected: (series UID, SOP class UID, SOP instance UID) of every rejected instance."""
    now = datetime.now()
    p = study.patient
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=UID_PREFIX)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyDate, ds.StudyTime = study.study_date, study.study_time
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AccessionNumber = study.accession_number
    ds.Modality = "KO"
    ds.Manufacturer = "DRIMCHECK PACS"
    ds.ReferringPhysicianName = study.referring_physician
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    ds.PatientName, ds.PatientID = p.dicom_name, p.ipp
    ds.PatientBirthDate, ds.PatientSex = p.birth_date, p.sex
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = generate_uid(prefix=UID_PREFIX)
    ds.StudyID = study.study_id
    ds.SeriesNumber, ds.InstanceNumber = 999, 1
    ds.ValueType = "CONTAINER"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = reason
    ds.ConceptNameCodeSequence = Sequence([code])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([template])
    by_series: dict[str, list[tuple[str, str]]] = {}
    for series_uid, sop_class, sop_uid in rejected:
        by_series.setdefault(series_uid, []).append((sop_class, sop_uid))
    series_items, content = [], []
    for series_uid, refs in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedSOPSequence = Sequence([_ref(c, u) for c, u in refs])
        series_items.append(item)
        for c, u in refs:
            entry = Dataset()
            entry.RelationshipType, entry.ValueType = "CONTAINS", "IMAGE"
            entry.ReferencedSOPSequence = Sequence([_ref(c, u)])
            content.append(entry)
    evidence = Dataset()
    evidence.StudyInstanceUID = study.study_uid
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    ds.ContentSequence = Sequence(content)
    return ds


def _ref(sop_class: str, sop_uid: str) -> Dataset:
    r = Dataset()
    r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = sop_class, sop_uid
    return r


#: C-STORE statuses that mean "stored" (DICOM PS3.4 B.2.3 Warning: B000 coercion of data elements, B006
#: elements discarded, B007 data set does not match SOP class; PS3.7 C.4 general warnings 0001, 0107, 0116).
#: A real PACS counts the object as delivered on any of them, as on 0000.
WARNING_STATUSES = frozenset({0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007})


def stored(status: int | None) -> bool:
    """Whether a C-STORE response status means the SCP kept the object (Success or Warning)."""
    return status == 0x0000 or status in WARNING_STATUSES


@dataclass
class StoreResult:
    status: int | None
    error: str | None
    evidence: list[str]

    @property
    def ok(self) -> bool:
        return self.error is None and stored(self.status)


#: PDU length we advertise to the DUT (A-ASSOCIATE-RQ Maximum Length); pynetdicom's default.
ADVERTISED_MAX_PDU = 16382
#: Bytes the DUT may send on one association in all (A-ASSOCIATE-AC, a C-STORE-RSP, A-RELEASE-RP are
#: well under a kilobyte): four maximal PDUs.
MAX_ASSOCIATION_BYTES = 4 * MAX_DICOM_PDU


def bounded_ae(ae_title: str, *, deadline_s: float, max_pdu: int = MAX_DICOM_PDU,
               max_total: int = MAX_ASSOCIATION_BYTES) -> Any:
    """A pynetdicom AE whose associations read what the peer sends within bounds.

    pynetdicom reads a PDU of whatever length its header announces (up to 4 GiB, into memory) and a peer
    trickling bytes never trips ``network_timeout`` (each recv succeeds). Here every association has a
    deadline for all its reads (``deadline_s`` from the socket's creation), a PDU longer than ``max_pdu``
    and more than ``max_total`` bytes in all are refused before being read: the read fails, pynetdicom
    aborts the association (Evt17). What went wrong is in ``ae.violations`` (French lines).
    """
    import time

    from pynetdicom import AE
    from pynetdicom.transport import AssociationSocket

    class BoundedSocket(AssociationSocket):
        def recv(self, nr_bytes: int) -> bytearray:  # type: ignore[override]
            if nr_bytes > max_pdu:
                ae.violations.append(too_large(f"PDU DICOM de {nr_bytes} octets annoncée par le pair, refusée", max_pdu))
                raise OSError("PDU too large")
            self.drimcheck_received = getattr(self, "drimcheck_received", 0) + nr_bytes
            if self.drimcheck_received > max_total:
                ae.violations.append(too_large("association DICOM : le pair envoie trop de données", max_total))
                raise OSError("too much data on the association")
            out = bytearray()
            while len(out) < nr_bytes:
                left = self.drimcheck_deadline - time.monotonic()
                if left <= 0:
                    ae.violations.append(f"association DICOM : délai de {deadline_s:g} s dépassé en lecture")
                    raise TimeoutError("association deadline")
                sock = self.socket
                if sock is None:
                    return out
                sock.settimeout(min(left, self.assoc.network_timeout or left))
                try:
                    data = sock.recv(min(65536, nr_bytes - len(out)))
                except TimeoutError:
                    continue  # loop: the deadline decides
                if not data:
                    return out
                out += data
            return out

    class BoundedAE(AE):
        def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> Any:  # type: ignore[override]
            sock = BoundedSocket(assoc, address=address)
            sock.tls_args = tls_args
            sock.drimcheck_deadline = time.monotonic() + deadline_s
            return sock

    ae = BoundedAE(ae_title=ae_title)
    ae.violations = []
    ae.maximum_pdu_size = ADVERTISED_MAX_PDU
    return ae


def send(ds: Dataset, host: str, port: int, called_aet: str, *, calling_aet: str = "DRIMCHECK_PACS",
         timeout_s: float = 10.0, evidence: Any = None) -> StoreResult:
    """C-STORE the note to the DUT's IOCM SCP; never raises.

    Bounded: each step (connection, association, C-STORE response, release) waits at most ``timeout_s``,
    the whole association at most 3 x ``timeout_s``, and what the DUT sends is capped (:func:`bounded_ae`).
    """
    paths = []
    if evidence is not None:
        from simulators.pacs.orthanc import encode_dataset

        paths.append(evidence.write_bytes("iocm-note-de-rejet", encode_dataset(ds), ".dcm"))
    ae = bounded_ae(calling_aet, deadline_s=3 * timeout_s)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.add_requested_context(KOS_SOP_CLASS, [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])

    def because(message: str) -> str:
        return f"{message} ({'; '.join(dict.fromkeys(ae.violations))})" if ae.violations else message

    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=[NODELAY_HANDLER])
    if not assoc.is_established:
        return StoreResult(None, because(f"association DICOM avec {called_aet}@{host}:{port} refusée ou impossible"),
                           paths)
    try:
        status = assoc.send_c_store(ds)
        code = getattr(status, "Status", None)
        fine = stored(code) and not ae.violations
        return StoreResult(code, None if fine else because(f"statut C-STORE 0x{code:04X}" if isinstance(code, int)
                                                            else f"statut C-STORE {code!r}"), paths)
    finally:
        assoc.release()
