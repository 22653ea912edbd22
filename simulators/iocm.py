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


@dataclass
class StoreResult:
    status: int | None
    error: str | None
    evidence: list[str]

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


def send(ds: Dataset, host: str, port: int, called_aet: str, *, calling_aet: str = "DRIMCHECK_PACS",
         timeout_s: float = 10.0, evidence: Any = None) -> StoreResult:
    """C-STORE the note to the DUT's IOCM SCP; never raises."""
    from pynetdicom import AE

    paths = []
    if evidence is not None:
        from simulators.pacs.orthanc import encode_dataset

        paths.append(evidence.write_bytes("iocm-note-de-rejet", encode_dataset(ds), ".dcm"))
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.add_requested_context(KOS_SOP_CLASS, [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=[NODELAY_HANDLER])
    if not assoc.is_established:
        return StoreResult(None, f"association DICOM avec {called_aet}@{host}:{port} refusée ou impossible", paths)
    try:
        status = assoc.send_c_store(ds)
        code = getattr(status, "Status", None)
        return StoreResult(code, None if code == 0 else f"statut C-STORE {code!r}", paths)
    finally:
        assoc.release()
