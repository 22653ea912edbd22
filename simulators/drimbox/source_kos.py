"""KOS writer of the reference Source DRIMbox (its own code: the harness parses KOS files independently).

The manifest follows the ANS samples (drimbox-spec §4.3): Key Object Selection Document, Implicit VR
Little Endian, PatientID = INS with the ASIP-SANTE-INS-NIR issuer and its OID, accession and order in
ReferencedRequestSequence, one evidence study, one series item per referenced series with its
RetrieveURL on the dbN FQDN of the PACS that holds the study. Beyond the ANS samples, each series
item also carries Retrieve AE Title and Retrieve Location UID (IHE XDS-I.b), so the manifest also
passes dciodvfy's IHEXDSIManifest profile.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
INS_ISSUER = "ASIP-SANTE-INS-NIR"
#: path of the Source's WADO-RS base on its dbN FQDN (as in the ANS samples: .../api/source/studies/...)
RETRIEVE_BASE_PATH = "/api/source"
IMPLEMENTATION_CLASS_UID = "2.25.84261596350410541185542296419306437771"
IMPLEMENTATION_VERSION = "DRIMCHECK_REF"
KOS_SERIES_NUMBER = 59  # ANS/PoC convention


def new_uid() -> str:
    """A fresh UID under the UUID-derived root 2.25 (ISO/IEC 9834-8)."""
    return f"2.25.{uuid.uuid4().int}"


def stable_uid(*parts: str) -> str:
    """A UID that stays the same for the same inputs (UUID v5 under 2.25)."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, '|'.join(parts)).int}"


@dataclass(frozen=True)
class ImageRef:
    """One instance found by C-FIND at IMAGE level."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    instance_number: int | None = None
    series_number: int | None = None
    modality: str = ""
    series_description: str = ""


@dataclass(kw_only=True)
class Identity:
    """The patient and the examination as the report (CDA) states them: what every artefact carries."""

    study_uid: str
    ins: str
    ins_oid: str
    family: str
    given: str
    birth_date: str
    sex: str
    birthplace: str
    accession: str
    accession_oid: str
    order: str
    order_oid: str

    def identity(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(Identity)}


@dataclass(kw_only=True)
class StudyFacts(Identity):
    """What the KOS says about the study: the report's identity and what the PACS holds (C-FIND)."""

    institution: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    images: list[ImageRef] = field(default_factory=list)


def _entity(oid: str) -> Dataset:
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _charset(*texts: str) -> str:
    try:
        for t in texts:
            t.encode("latin-1")
        return "ISO_IR 100"
    except UnicodeEncodeError:
        return "ISO_IR 192"


def series_url(db_fqdn: str, study_uid: str, series_uid: str, *, scheme: str = "https") -> str:
    return f"{scheme}://{db_fqdn}{RETRIEVE_BASE_PATH}/studies/{study_uid}/series/{series_uid}"


def build_kos(facts: StudyFacts, *, db_fqdn: str, retrieve_aet: str, retrieve_location_uid: str,
              instance_number: int = 1, now: datetime | None = None, sop_uid: str | None = None,
              series_uid: str | None = None) -> Dataset:
    """The manifest of every image in facts.images, as a dataset with its file meta."""
    now = now or datetime.now().astimezone()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    sop_uid = sop_uid or new_uid()
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = IMPLICIT_VR_LE
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta

    ds.SpecificCharacterSet = _charset(facts.family, facts.given, facts.institution, facts.study_description)
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = facts.study_date
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = facts.study_time
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.AccessionNumber = ""  # as in the ANS samples: the accession is in ReferencedRequestSequence
    ds.Modality = "KO"
    ds.Manufacturer = "drimcheck"
    ds.InstitutionName = facts.institution[:64]
    ds.ReferringPhysicianName = facts.referring_physician
    ds.TimezoneOffsetFromUTC = now.strftime("%z") or "+0000"
    ds.StudyDescription = facts.study_description[:64]
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    ds.PatientName = f"{facts.family}^{facts.given}"
    ds.PatientID = facts.ins
    ds.IssuerOfPatientID = INS_ISSUER
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([_entity(facts.ins_oid)])
    ds.PatientBirthDate = facts.birth_date
    ds.PatientSex = facts.sex
    other = Dataset()
    other.PatientID = facts.ins
    other.IssuerOfPatientID = INS_ISSUER
    other.TypeOfPatientID = "TEXT"
    other.IssuerOfPatientIDQualifiersSequence = Sequence([_entity(facts.ins_oid)])
    ds.OtherPatientIDsSequence = Sequence([other])
    if facts.birthplace:
        ds.PatientComments = facts.birthplace  # PoC convention: INSEE code of the birthplace
    ds.StudyInstanceUID = facts.study_uid
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.StudyID = facts.study_id
    ds.SeriesNumber = KOS_SERIES_NUMBER
    ds.InstanceNumber = instance_number

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("113030", "DCM", "Manifest")])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])

    request = Dataset()
    request.AccessionNumber = facts.accession
    request.IssuerOfAccessionNumberSequence = Sequence([_entity(facts.accession_oid)])
    request.ReferencedStudySequence = Sequence([])
    request.StudyInstanceUID = facts.study_uid
    request.RequestedProcedureDescription = ""
    request.RequestedProcedureCodeSequence = Sequence([])
    request.OrderPlacerIdentifierSequence = Sequence([_entity(facts.order_oid)])
    request.RequestedProcedureID = ""
    request.PlacerOrderNumberImagingServiceRequest = facts.order
    request.FillerOrderNumberImagingServiceRequest = ""
    ds.ReferencedRequestSequence = Sequence([request])

    by_series: dict[str, list[ImageRef]] = {}
    for img in facts.images:
        by_series.setdefault(img.series_uid, []).append(img)
    series_items = []
    content = []
    lines = [f"Examen : {facts.study_description}"]
    for series_uid_, images in by_series.items():
        images.sort(key=lambda i: (i.instance_number or 0, i.sop_uid))
        item = Dataset()
        item.RetrieveAETitle = retrieve_aet
        item.RetrieveURL = series_url(db_fqdn, facts.study_uid, series_uid_)
        refs = []
        for img in images:
            ref = Dataset()
            ref.ReferencedSOPClassUID = img.sop_class_uid
            ref.ReferencedSOPInstanceUID = img.sop_uid
            refs.append(ref)
            entry = Dataset()
            entry.RelationshipType = "CONTAINS"
            entry.ValueType = "IMAGE"
            sop = Dataset()
            sop.ReferencedSOPClassUID = img.sop_class_uid
            sop.ReferencedSOPInstanceUID = img.sop_uid
            entry.ReferencedSOPSequence = Sequence([sop])
            content.append(entry)
        item.ReferencedSOPSequence = Sequence(refs)
        item.SeriesInstanceUID = series_uid_
        item.RetrieveLocationUID = retrieve_location_uid
        series_items.append(item)
        first = images[0]
        lines.append(f"Série-{series_uid_} : {first.modality} : {first.series_description}")
    evidence = Dataset()
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    evidence.StudyInstanceUID = facts.study_uid
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("113012", "DCM", "Key Object Description")])
    text.TextValue = "\n".join(lines)[:10240]
    content.append(text)
    ds.ContentSequence = Sequence(content)
    if ds.SpecificCharacterSet != "ISO_IR 192" and _charset(text.TextValue) == "ISO_IR 192":
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def encode(ds: Dataset) -> bytes:
    """The KOS as a DICOM Part 10 file in Implicit VR Little Endian."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True, implicit_vr=True, little_endian=True)
    return buf.getvalue()


__all__ = ["ImageRef", "Identity", "StudyFacts", "build_kos", "encode", "new_uid", "stable_uid", "series_url",
           "RETRIEVE_BASE_PATH", "KOS_SOP_CLASS"]
