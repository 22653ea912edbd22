"""Images of the reference DRIMbox Conso: KOS reading, WADO-RS retrieval from the Source, export to the local PACS.

* KOS (from the DMP): study, PatientID, and per series the RetrieveURL and the referenced instances.
* WADO-RS: one series-level GET per RetrieveURL, as in the ANS validator samples (drimbox-spec §5.3):
  the ANS ``Accept`` list (transfer syntaxes with q-values, ``boundary=**``), ``Authorization: Bearer
  <PSC access token>``, ``KOS-SOPInstanceUID``; mTLS with the SERV_SSL certificate of the DRIMbox's
  dbN (the certificate DRIMboxes present to each other); the multipart answer is split as it streams
  (the latency to the first instance is measured). Only hosts of the valid whitelist are contacted:
  the caller asks the trust function first.
* Export: STOW-RS of the instances as received (bytes untouched) to one of the DRIMbox's PACS.

The reference's own code (no harness import); mutants change single behaviours (mutants-conso.toml).
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from simulators.drimbox import mutants, netutil

# The Accept value of ANS's WADO-RS validator samples (Echantillons validateurs / Requête WADO-RS), verbatim.
ANS_ACCEPT = ",".join(
    f'multipart/related; type="application/dicom";transfer-syntax={ts};q={q};boundary=**'
    for ts, q in (("1.2.840.10008.1.2.4.70", "0.9"), ("1.2.840.10008.1.2.4.80", "0.8"),
                  ("1.2.840.10008.1.2.4.91", "0.6"), ("1.2.840.10008.1.2.4.50", "0.5"),
                  ("1.2.840.10008.1.2.4.51", "0.5"), ("1.2.840.10008.1.2.4.100", "0.5"),
                  ("1.2.840.10008.1.2.4.101", "0.5"), ("1.2.840.10008.1.2.4.102", "0.5"),
                  ("1.2.840.10008.1.2.4.103", "0.5"), ("1.2.840.10008.1.2.1", "0.4"))) + ","


class WadoError(RuntimeError):
    """A KOS that cannot be read, or an export that failed (one French line)."""


@dataclass
class KosSeries:
    series_uid: str
    retrieve_url: str
    instances: list[str]

    @property
    def host(self) -> str:
        return (urlsplit(self.retrieve_url).hostname or "").lower()


@dataclass
class Kos:
    sop_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    series: list[KosSeries]

    def hosts(self) -> list[str]:
        return sorted({s.host for s in self.series})


def read_kos(data: bytes) -> Kos:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        evidence = ds.CurrentRequestedProcedureEvidenceSequence
    except (InvalidDicomError, AttributeError, ValueError, TypeError) as exc:
        raise WadoError(f"KOS illisible ({type(exc).__name__})") from None
    if len(evidence) != 1:
        raise WadoError(f"KOS référençant {len(evidence)} études (une seule attendue)")
    series = []
    for item in evidence[0].get("ReferencedSeriesSequence", []):
        url = str(item.get("RetrieveURL", "") or "")
        series.append(KosSeries(str(item.SeriesInstanceUID), url,
                                [str(r.ReferencedSOPInstanceUID) for r in item.get("ReferencedSOPSequence", [])]))
    return Kos(str(ds.SOPInstanceUID), str(evidence[0].StudyInstanceUID), str(ds.get("PatientID", "")),
               str(ds.get("PatientName", "")), str(ds.get("StudyDate", "")), str(ds.get("StudyDescription", "")), series)


@dataclass
class SeriesFetch:
    """One series asked to a Source (or not asked: `refused` says why)."""

    series_uid: str
    url: str
    host: str
    expected: int
    status: int | None = None
    instances: list[bytes] = field(default_factory=list)
    transfer_syntax: str = ""
    refused: str | None = None  # not contacted (host not in the whitelist), or the Source's refusal
    error: str | None = None
    seconds: float = 0.0
    first_instance_s: float | None = None
    bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.status == 200 and len(self.instances) >= self.expected


class WadoClient:
    """WADO-RS towards peer Sources, with the DRIMbox's SERV_SSL certificate (mTLS) and its hosts map."""

    def __init__(self, config: Any, *, timeout_s: float = 60.0):
        own = config.pacs[0].db  # the PACS the Conso exports to, and consults for
        creds = config.certs.get(f"serv_ssl:{own}")
        with_cert = creds is not None and not mutants.active("conso-no-client-cert")
        ctx = netutil.tls_context([config.trust["igc_chain"]], creds["chain"] if with_cert else None,
                                  creds["key"] if with_cert else None)
        self._http = netutil.client(config.hosts, ctx, timeout_s=timeout_s)

    def close(self) -> None:
        self._http.close()

    def headers(self, token: str, kos_uid: str) -> dict[str, str]:
        out = {"Accept": ANS_ACCEPT, "Authorization": f"Bearer {token}", "KOS-SOPInstanceUID": kos_uid}
        if mutants.active("conso-no-token"):
            del out["Authorization"]
        return out

    def fetch_series(self, series: KosSeries, token: str, kos_uid: str) -> SeriesFetch:
        result = SeriesFetch(series.series_uid, series.retrieve_url, series.host, len(series.instances))
        t0 = time.monotonic()
        try:
            with self._http.stream("GET", series.retrieve_url, headers=self.headers(token, kos_uid)) as resp:
                result.status = resp.status_code
                chunks: list[bytes] = []
                ctype = resp.headers.get("content-type", "")
                _, params = netutil.media_params(ctype)
                delimiter = b"--" + params.get("boundary", "").encode("latin-1")
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    result.bytes += len(chunk)
                    if result.first_instance_s is None and resp.status_code == 200 and len(delimiter) > 2 and \
                            b"".join(chunks).count(delimiter) >= 2:
                        result.first_instance_s = time.monotonic() - t0
                body = b"".join(chunks)
        except httpx.HTTPError as exc:
            result.error = f"Source injoignable : {type(exc).__name__}"
            result.seconds = time.monotonic() - t0
            return result
        result.seconds = time.monotonic() - t0
        if result.status != 200:
            result.refused = f"refusé par la Source (HTTP {result.status} {body[:80].decode('utf-8', 'replace').strip()})"
            return result
        try:
            parts = netutil.split_multipart(ctype, body)
        except ValueError as exc:
            result.error = f"réponse multipart illisible : {exc}"
            return result
        result.transfer_syntax = params.get("transfer-syntax", "")
        result.instances = [data for _, data in parts if len(data) > 132 and data[128:132] == b"DICM"]
        if mutants.active("cov-conso-multiframe-dropped"):  # mutant: only single-frame objects kept (viewer limitation)
            result.instances = [data for data in result.instances if _frames(data) <= 1]
        return result

    # -- export ------------------------------------------------------------------------------------
    def export(self, pacs: Any, instances: list[bytes], *, local_patient: tuple[str, str] | None = None) -> int:
        """STOW-RS of the instances to `pacs` (a service.PacsLink); returns how many it stored."""
        if mutants.active("conso-export-incomplete") and len(instances) > 1:
            instances = instances[:-1]
        if mutants.active("conso-export-identity") and local_patient:
            instances = [_relabel(data, *local_patient) for data in instances]
        if mutants.active("cov2-conso-export-identity-non-ct"):
            instances = [_transcode_path(data) for data in instances]
        boundary = f"drimbox-export-{uuid.uuid4().hex}"
        body = bytearray()
        for data in instances:
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        try:
            resp = httpx.post(f"{pacs.http_url}/dicom-web/studies", content=bytes(body), auth=(pacs.username, pacs.password),
                              headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                                       "Accept": "application/dicom+json"}, timeout=60.0, trust_env=False)
        except httpx.HTTPError as exc:
            raise WadoError(f"PACS {pacs.name} injoignable : {type(exc).__name__}") from None
        if resp.status_code not in (200, 202):
            raise WadoError(f"PACS {pacs.name} : STOW-RS refusé (HTTP {resp.status_code})")
        try:
            stored = (resp.json().get("00081199") or {}).get("Value") or []
        except (ValueError, AttributeError):
            stored = []
        return len(stored)


def _frames(data: bytes) -> int:
    """Mutant cov-conso-multiframe-dropped: NumberOfFrames of one instance (1 when absent)."""
    import pydicom

    try:
        return int(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable: kept
        return 1


def _transcode_path(data: bytes) -> bytes:
    """Mutant cov2-conso-export-identity-non-ct: objects other than single-frame CT go through the "transcoding"
    path towards the local PACS, which rebuilds the header from a list of attributes that forgets the
    issuer of the PatientID and the other patient identifiers (the INS). Single-frame CT is stored as received."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    if str(ds.get("Modality", "")) == "CT" and int(ds.get("NumberOfFrames", 1) or 1) <= 1:
        return data
    for keyword in ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence",
                    "OtherPatientIDs"):
        if keyword in ds:
            delattr(ds, keyword)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _relabel(data: bytes, patient_id: str, issuer: str) -> bytes:
    """Mutant conso-export-identity: the local IPP of the contextual call replaces the Source's identity."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer.split("&", 1)[0]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
