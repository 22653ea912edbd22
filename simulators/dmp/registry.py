"""The DMP simulator's document registry/repository: entries, status, documents per patient.

The consumer transactions (ITI-18 Registry Stored Query, ITI-43 Retrieve Document Set) are in
`simulators/dmp/consultation.py`, on top of `entries` and `retrieve`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from drimcheck import xds

REPOSITORY_UNIQUE_ID = "1.2.250.1.213.1.1.9.999.1"  # drimcheck's simulated DMP repository


@dataclass
class Entry:
    """One registered document (XDSDocumentEntry) with the bytes the repository keeps."""

    entry_uuid: str
    unique_id: str
    patient_id: str
    status: str
    mime_type: str
    metadata: xds.RegistryObject
    document: bytes
    submission_uid: str
    submitted_at: float
    study_uids: set[str] = field(default_factory=set)
    replaces: str | None = None
    replaced_by: str | None = None
    repository_unique_id: str = REPOSITORY_UNIQUE_ID

    @property
    def is_kos(self) -> bool:
        fmt = self.metadata.code(xds.FORMAT_CODE)
        return self.mime_type == "application/dicom" or bool(fmt and fmt.node == xds.KOS_FORMAT)

    def brief(self) -> dict[str, Any]:
        return {"entry_uuid": self.entry_uuid, "unique_id": self.unique_id, "patient_id": self.patient_id,
                "status": self.status, "mime_type": self.mime_type, "studies": sorted(self.study_uids),
                "replaces": self.replaces, "replaced_by": self.replaced_by, "size": len(self.document),
                "sha1": hashlib.sha1(self.document).hexdigest()}


class RegistryError(Exception):
    """One XDS error: code (XDSxxx) and context; the submission is refused as a whole."""

    def __init__(self, code: str, context: str):
        super().__init__(f"{code}: {context}")
        self.code = code
        self.context = context


class Registry:
    """Thread-safe in-memory registry + repository."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}  # entry UUID -> entry

    # -- transactions (record side) --------------------------------------------------------
    def register(self, request: xds.XdsRequest, *, study_uids: set[str] | None = None) -> tuple[dict[str, str], list[str]]:
        """ITI-41: store every document entry; RPLC deprecates the replaced entry.

        Returns ({document id -> entry UUID}, [replaced entry UUIDs]); RegistryError refuses it all.
        """
        with self._lock:
            ss = request.submission_set
            assigned: dict[str, str] = {}
            for entry in request.entries:
                uid = entry.unique_id
                if not uid:
                    raise RegistryError("XDSRegistryMetadataError", f"fiche {entry.id} sans uniqueId")
                if any(e.unique_id == uid for e in self._entries.values()):
                    raise RegistryError("XDSDuplicateUniqueIdInRegistry", f"uniqueId {uid} déjà enregistré")
                if not entry.patient_id:
                    raise RegistryError("XDSRegistryMetadataError", f"fiche {entry.id} sans patientId")
                keep = entry.id.startswith("urn:uuid:") and _valid_uuid(entry.id[9:]) and entry.id not in self._entries
                assigned[entry.id] = entry.id if keep else f"urn:uuid:{uuid.uuid4()}"
            replaced = []
            for assoc in request.associations(xds.RPLC):
                old = self._entries.get(assoc.target)
                if old is None:
                    raise RegistryError("XDSUnknownDocument", f"RPLC vers {assoc.target} : fiche inconnue du DMP")
                if old.status != xds.STATUS_APPROVED:
                    raise RegistryError("XDSReplaceFailed", f"RPLC vers {assoc.target} : fiche au statut {old.status}")
                new = next((e for e in request.entries if e.id == assoc.source), None)
                if new is None:
                    raise RegistryError("XDSRegistryMetadataError", f"RPLC depuis {assoc.source} : fiche absente du lot")
                if new.patient_id != old.patient_id:
                    raise RegistryError("XDSPatientIdDoesNotMatch", "RPLC vers une fiche d'un autre patient")
                replaced.append((old, assigned[new.id]))
            now = time.time()
            kos_ids = {e.id for e in request.kos_entries()}
            for entry in request.entries:
                eu = assigned[entry.id]
                self._entries[eu] = Entry(eu, entry.unique_id, entry.patient_id, xds.STATUS_APPROVED, entry.mime_type,
                                          entry, request.documents.get(entry.id, b""),
                                          ss.unique_id if ss else "", now,
                                          set(study_uids or ()) if entry.id in kos_ids else set())
            for old, new_uuid in replaced:
                old.status = xds.STATUS_DEPRECATED
                old.replaced_by = new_uuid
                self._entries[new_uuid].replaces = old.entry_uuid
                if not self._entries[new_uuid].study_uids:
                    self._entries[new_uuid].study_uids = set(old.study_uids)
            return assigned, [old.entry_uuid for old, _ in replaced]

    def update_status(self, request: xds.XdsRequest) -> list[tuple[str, str]]:
        """ITI-57: UpdateAvailabilityStatus associations; returns [(entry UUID, new status)]."""
        with self._lock:
            changes = []
            updates = request.associations(xds.UPDATE_AVAILABILITY)
            if not updates:
                raise RegistryError("XDSRegistryMetadataError", "aucune association UpdateAvailabilityStatus")
            for assoc in updates:
                entry = self._entries.get(assoc.target)
                if entry is None:
                    raise RegistryError("XDSUnknownDocument", f"fiche {assoc.target} inconnue du DMP")
                original, new = assoc.slot("OriginalStatus"), assoc.slot("NewStatus")
                if original != entry.status:
                    raise RegistryError("XDSMetadataUpdateError",
                                        f"OriginalStatus {original} alors que la fiche est {entry.status}")
                if new not in (xds.STATUS_APPROVED, xds.STATUS_DEPRECATED, xds.STATUS_DELETED):
                    raise RegistryError("XDSMetadataUpdateError", f"NewStatus {new} inconnu")
                changes.append((entry, new))
            for entry, new in changes:
                entry.status = new
            return [(e.entry_uuid, new) for e, new in changes]

    # -- queries (what ITI-18 / ITI-43 expose, see simulators/dmp/consultation.py) --------------
    def get(self, entry_uuid: str) -> Entry | None:
        with self._lock:
            return self._entries.get(entry_uuid)

    def find_documents(self, patient_id: str, statuses: tuple[str, ...] = (xds.STATUS_APPROVED,),
                       type_codes: tuple[str, ...] = ()) -> list[Entry]:
        with self._lock:
            out = []
            for e in self._entries.values():
                tc = e.metadata.code(xds.TYPE_CODE)
                if e.patient_id == patient_id and e.status in statuses and (not type_codes or (tc and tc.node in type_codes)):
                    out.append(e)
            return sorted(out, key=lambda e: e.submitted_at)

    def retrieve(self, repository_unique_id: str, unique_id: str) -> Entry | None:
        with self._lock:
            return next((e for e in self._entries.values()
                         if e.unique_id == unique_id and e.repository_unique_id == repository_unique_id), None)

    def kos_of_study(self, study_uid: str) -> list[Entry]:
        """Every KOS entry registered for a study, oldest first, whatever its status."""
        with self._lock:
            return sorted((e for e in self._entries.values() if e.is_kos and study_uid in e.study_uids),
                          key=lambda e: e.submitted_at)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.brief() for e in sorted(self._entries.values(), key=lambda e: e.submitted_at)]

    def entries(self) -> list[Entry]:
        """Every entry, oldest first (the consultation side filters them)."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.submitted_at)

    def add(self, entry: Entry) -> Entry:
        """Store an entry built by the harness (consultation test data); uniqueId must be new."""
        with self._lock:
            if any(e.unique_id == entry.unique_id for e in self._entries.values()):
                raise RegistryError("XDSDuplicateUniqueIdInRegistry", f"uniqueId {entry.unique_id} déjà enregistré")
            self._entries[entry.entry_uuid] = entry
            return entry


def _valid_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False
