"""Helpers shared by the tests of the PSC, Proxy e-santé and peer Source simulators, and of the checks judging
retrieved instances (imported, not collected)."""

from __future__ import annotations

import io
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from drimcheck import config as sut_config
from drimcheck.config import Address
from fixtures.pki import TestPKI, trust_context
from simulators.httpsim import mapped_client
from simulators.procutil import free_port
from simulators.psc import DEFAULT_SCOPE, PscSimulator

APP_REDIRECT = "https://vi1.349.mesimagesmedicales.fr/api/auth/redirect"


def dicom_bytes(sop_uid: str) -> bytes:
    """A minimal CT Image Storage Part 10 file with this SOP Instance UID (a retrieved instance as evidence)."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = sop_uid
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart_dicom(*uids: str, boundary: str = "b0undary") -> tuple[bytes, str]:
    """A WADO-RS answer carrying these instances: (multipart/related body, its Content-Type)."""
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + dicom_bytes(u) + b"\r\n"
                    for u in uids) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


TLS_FAILURES = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


def client(hosts: dict[str, str], trust: list, cert: Any = None, **kw: Any) -> httpx.Client:
    """httpx client reaching FQDNs through ``hosts``, trusting ``trust`` PEMs, presenting ``cert`` (mTLS) if given."""
    ctx = cert.client_context(trust) if cert is not None else trust_context(trust)
    return mapped_client(hosts, verify=ctx, **kw)


def login(http: httpx.Client, psc: PscSimulator, client_id: str = "app", *, redirect_uri: str = APP_REDIRECT,
          nonce: str = "nonce-1", state: str = "state-1", **extra: str) -> dict[str, str]:
    """Run the authorization request; return the redirect's query parameters (single values)."""
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": DEFAULT_SCOPE, "state": state, "nonce": nonce, "acr_values": "eidas1", **extra}
    resp = http.get(psc.endpoint("auth"), params=params)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(redirect_uri + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_flow(http: httpx.Client, psc: PscSimulator, secret: str, client_id: str = "app", **extra: str) -> dict:
    """Authorization code flow with Basic client authentication; the token endpoint's JSON."""
    code = login(http, psc, client_id, **extra)["code"]
    resp = http.post(psc.endpoint("token"), auth=(client_id, secret),
                     data={"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT})
    assert resp.status_code == 200, resp.text
    return resp.json()


def stub_runtime(pki: TestPKI, *, roles: tuple[str, ...] = ("source",), sims: dict | None = None) -> SimpleNamespace:
    """The part of CampaignRuntime the simulators' start_for_campaign use: SUT, PKI, addresses, sims."""
    sut = replace(sut_config.load(None), roles=roles)
    allocated: dict[str, Address] = {}

    def simulator_address(name: str) -> Address:
        if name not in allocated:
            allocated[name] = Address("127.0.0.1", free_port())
        return allocated[name]

    return SimpleNamespace(sut=sut, pki=pki, sims=sims if sims is not None else {},
                           simulator_address=simulator_address, workdir=pki.directory.parent,
                           dut_addresses=lambda: {"conso": Address("127.0.0.1", 18080)})
