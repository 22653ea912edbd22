"""Settings of the managed Orthanc (OrthancConfig), its errors, and the Orthanc JSON configuration it runs with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BINARY = "/usr/sbin/Orthanc"
DEFAULT_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
SCU_AET = "DRIMCHECK_SCU"  # calling AE title of our own C-STORE client
REFERENCE_DUT_AET = "DRIMBOX"  # calling AE title of the embedded reference DRIMbox (C-ECHO, C-FIND)
DEFAULT_CALLING_AETS = (REFERENCE_DUT_AET, SCU_AET)
LOOPBACK = "127.0.0.1"
_WILDCARDS = {"", "0.0.0.0", "::", "*"}


@dataclass
class OrthancConfig:
    """Settings of one managed Orthanc; ports 0 are picked free at the first start and kept across restarts."""

    aet: str = "DRIMCHECK_PACS"
    http_port: int = 0  # 0 = pick a free port
    dicom_port: int = 0
    username: str = "drimcheck"
    password: str | None = None  # None = random per instance
    name: str = "DRIMCHECK-PACS"
    # name -> (aet, host, port); AllowEcho/Find/Get/Move/Store all true
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    # Interface Orthanc listens on: loopback for a DUT on this host (the embedded reference), "0.0.0.0" for
    # a DUT on another host, or one address of this host.
    bind_host: str = LOOPBACK
    # AE titles allowed to open associations besides the declared modalities: the DUT's and the harness's.
    calling_aets: tuple[str, ...] = DEFAULT_CALLING_AETS
    binary: str = DEFAULT_BINARY
    dicomweb_plugin: str = DEFAULT_DICOMWEB_PLUGIN
    extra: dict[str, Any] = field(default_factory=dict)  # merged last into Orthanc's JSON (tuning, fault injection)


class OrthancError(RuntimeError):
    """A failure of the PACS simulator: one clear line, plus the tail of Orthanc's log when it helps."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        return f"{self.message}\n--- tail of Orthanc's log ---\n{self.log_tail}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OrthancSettings:
    """The Orthanc JSON configuration: storage, ports, credentials, DICOM peers allowed to associate."""

    config: OrthancConfig
    host: str
    password: str
    http_port: int
    dicom_port: int
    scratch: Path | None
    _modalities: dict[str, tuple[str, str, int]]

    @property
    def loopback_only(self) -> bool:
        """True when only this host may reach Orthanc (bind_host is a loopback address)."""
        bind = self.config.bind_host.strip()
        return bind not in _WILDCARDS and (bind.startswith("127.") or bind in ("::1", "localhost"))

    def _modalities_json(self) -> dict[str, dict[str, Any]]:
        """Declared modalities, plus one calling-only entry per allowed AE title not declared already."""
        out = {name: self._modality_json(*m) for name, m in self._modalities.items()}
        declared = {m[0] for m in self._modalities.values()}
        caller_host = LOOPBACK if self.loopback_only else self.host
        for aet in dict.fromkeys(self.config.calling_aets):
            if aet and aet not in declared:
                # Port 104 is never used: a calling-only AE is no C-MOVE destination.
                out[f"caller-{re.sub(r'[^A-Za-z0-9_-]', '_', aet)}"] = self._modality_json(aet, caller_host, 104)
        return out

    def _orthanc_json(self) -> dict[str, Any]:
        assert self.scratch is not None
        db = str(self.scratch / "db")
        loopback = self.loopback_only
        conf: dict[str, Any] = {
            "Name": self.config.name,
            "StorageDirectory": db,
            "IndexDirectory": db,
            "StorageCompression": False,
            "Plugins": [self.config.dicomweb_plugin],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,  # DICOM does not compress: keep throughput figures honest
            "HttpTimeout": 10,  # Orthanc as HTTP client
            "WebDavEnabled": False,
            "SslEnabled": False,  # never: Orthanc's TLS segfaults in Debian's build (docs/stack.md §2)
            "RemoteAccessAllowed": not loopback,  # HTTP clients from another host: only for a DUT there
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.config.username: self.password},
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            # Only the test bed's AE titles: declared modalities and calling_aets, calling our AE title.
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": loopback,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowFindWorklist": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "UnknownSopClassAccepted": True,
            "DicomScuTimeout": 5,
            "DicomModalitiesInDatabase": False,
            "DicomModalities": self._modalities_json(),
            "OrthancPeers": {},
            "StableAge": 1,
            "SaveJobs": False,
            "DicomWeb": {
                "Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                "Host": f"{self.host}:{self.http_port}", "Ssl": False,
            },
        }
        if self.config.bind_host.strip() not in _WILDCARDS:
            conf["HttpBindAddresses"] = [self.host]  # Orthanc >= 1.12.10; older ones ignore it (bind shim)
        conf.update(self.config.extra)
        return conf

    @staticmethod
    def _modality_json(aet: str, host: str, port: int) -> dict[str, Any]:
        return {"AET": aet, "Host": host, "Port": int(port), "AllowEcho": True, "AllowFind": True,
                "AllowGet": True, "AllowMove": True, "AllowStore": True}

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declare a DICOM peer (C-MOVE destination, C-GET caller) now via REST; kept across restarts."""
        self._modalities[name] = (aet, host, int(port))
        if self.running:
            self._request("PUT", f"/modalities/{name}", json=self._modality_json(aet, host, port))
