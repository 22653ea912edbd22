"""What the PACS holds: storing instances (STOW-RS or C-STORE); study management (list, delete, reset)."""

from __future__ import annotations

import copy
import io
import re
import secrets
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from simulators.pacs.orthanc_config import SCU_AET, OrthancError, _one_line
from simulators.pacs.orthanc_rest import OrthancRest

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STOW_BATCH = 50


def _on_conn_open(event: Any) -> None:
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _nodelay_handler() -> tuple[Any, Any]:
    from pynetdicom import evt

    return (evt.EVT_CONN_OPEN, _on_conn_open)


# pynetdicom event handler that disables Nagle on an association's socket (requestor or acceptor side):
# pass it in evt_handlers= of AE.associate() / AE.start_server().
NODELAY_HANDLER = _nodelay_handler()


def encode_dataset(ds: pydicom.Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file (what STOW-RS expects); Explicit VR LE file meta added if missing."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds = copy.copy(ds)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _tag_value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


class OrthancStorage(OrthancRest):
    """DICOM operations: storing instances by STOW-RS (REST) or C-STORE (the DICOM port)."""

    host: str
    dicom_port: int

    def store(self, datasets: Iterable[pydicom.Dataset], *, via: str = "stow", batch_size: int = _STOW_BATCH) -> None:
        """Store instances via STOW-RS (batches of batch_size) or via C-STORE (pynetdicom, TCP_NODELAY)."""
        if via == "stow":
            self._store_stow(datasets, batch_size)
        elif via == "cstore":
            self._store_cstore(datasets)
        else:
            raise ValueError(f"via must be 'stow' or 'cstore', not {via!r}")

    def _store_stow(self, datasets: Iterable[pydicom.Dataset], batch_size: int) -> None:
        boundary = "drimcheck-" + secrets.token_hex(12)
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        for batch in _batched(datasets, batch_size):
            body = bytearray()
            for ds in batch:
                body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                body += encode_dataset(ds)
                body += b"\r\n"
            body += f"--{boundary}--\r\n".encode()
            response = self._request("POST", "/dicom-web/studies", ok=(200, 202, 409), content=bytes(body),
                                     headers=headers)
            try:
                result = response.json()
            except ValueError:
                result = {}
            failed = result.get("00081198", {}).get("Value", [])
            stored = result.get("00081199", {}).get("Value", [])
            if failed or len(stored) != len(batch) or response.status_code != 200:
                reason = _tag_value(failed[0], "00081197") if failed else None
                raise OrthancError(f"STOW-RS: Orthanc stored {len(stored)} of {len(batch)} instances "
                                   f"(HTTP {response.status_code}, {len(failed)} failed"
                                   + (f", first FailureReason {reason:#06x}" if isinstance(reason, int) else "") + ")")

    def _store_cstore(self, datasets: Iterable[pydicom.Dataset]) -> None:
        from pynetdicom import AE

        items = list(datasets)
        if not items:
            return
        syntaxes: dict[str, list[str]] = {}
        for ds in items:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) or ExplicitVRLittleEndian
            found = syntaxes.setdefault(str(ds.SOPClassUID), [])
            if ts not in found:
                found.append(ts)
        if len(syntaxes) > 128:
            raise OrthancError(f"C-STORE: {len(syntaxes)} SOP classes exceed the 128 presentation contexts")
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 5, 30, 30
        for sop_class, found in syntaxes.items():
            ae.add_requested_context(sop_class, list(dict.fromkeys(
                [*found, ExplicitVRLittleEndian, ImplicitVRLittleEndian])))
        where = f"{self.aet}@{self.host}:{self.dicom_port}"
        assoc = ae.associate(self.host, self.dicom_port, ae_title=self.aet, evt_handlers=[NODELAY_HANDLER])
        if not assoc.is_established:
            raise OrthancError(f"C-STORE: association with {where} was "
                               f"{'rejected' if assoc.is_rejected else 'aborted or failed'}")
        try:
            for ds in items:
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, AttributeError, RuntimeError) as exc:  # no context, bad dataset, ...
                    raise OrthancError(f"C-STORE of {ds.get('SOPInstanceUID', '?')} to {where}: "
                                       f"{_one_line(str(exc))}") from None
                code = getattr(status, "Status", None)
                if code is None or not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
                    detail = "no response (timeout or abort)" if code is None else f"status {code:#06x}"
                    raise OrthancError(f"C-STORE of {ds.SOPInstanceUID} to {where} failed: {detail}")
        finally:
            if assoc.is_established:
                assoc.release()


class OrthancStudies(OrthancRest):
    """Study management over the REST API: reset, list a study's instances, delete an instance or a study."""

    def clear(self) -> None:
        """Delete every patient (hence every study, series and instance): fast reset between scenarios."""
        patients = self._request("GET", "/patients").json()
        if patients:
            self._request("POST", "/tools/bulk-delete", json={"Resources": patients})

    def instances_of_study(self, study_uid: str) -> list[dict[str, str]]:
        """Every instance of a study per QIDO-RS, as UID dicts sorted by series then SOP UID; [] when absent."""
        self._check_uid(study_uid)
        params = [("includefield", tag) for tag in ("0020000D", "0020000E", "00080016", "00080018")]
        response = self._request("GET", f"/dicom-web/studies/{study_uid}/instances", ok=(200, 204, 404),
                                 params=params, headers={"Accept": "application/dicom+json"})
        if response.status_code != 200 or not response.content.strip():
            return []
        rows = [{"StudyInstanceUID": _tag_value(item, "0020000D") or study_uid,
                 "SeriesInstanceUID": _tag_value(item, "0020000E"),
                 "SOPInstanceUID": _tag_value(item, "00080018"),
                 "SOPClassUID": _tag_value(item, "00080016")} for item in response.json()]
        return sorted(rows, key=lambda r: (r["SeriesInstanceUID"] or "", r["SOPInstanceUID"] or ""))

    def delete_instance(self, sop_uid: str) -> None:
        """Delete one instance by SOPInstanceUID (simulates a missing image); OrthancError if unknown."""
        self._request("DELETE", f"/instances/{self._lookup(sop_uid, 'Instance')}")

    def delete_study(self, study_uid: str) -> None:
        """Delete one study by StudyInstanceUID; OrthancError if unknown."""
        self._request("DELETE", f"/studies/{self._lookup(study_uid, 'Study')}")

    def _lookup(self, uid: str, level: str) -> str:
        self._check_uid(uid)
        matches = self._request("POST", "/tools/lookup", content=uid).json()
        for match in matches:
            if match.get("Type") == level:
                return match["ID"]
        raise OrthancError(f"Orthanc has no {level.lower()} with UID {uid}")

    @staticmethod
    def _check_uid(uid: str) -> None:
        if not _UID_RE.match(uid or "") or len(uid) > 64:
            raise OrthancError(f"not a DICOM UID: {uid!r}")
