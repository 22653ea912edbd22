"""Simulators as strict as the real services, and no stricter (issue 15, deliverable 1; docs/simulators.md).

Each test pins one behaviour on which a simulator used to differ from the real service it stands for.
"""

from __future__ import annotations

import re

import pytest

from drimcheck import xds
from simulators.dmp import DmpSimulator
from tests.test_dmp import CERT, build, kos_and_study, pki, signer  # noqa: F401 - fixtures

REPOSITORY = "/si-dmp-server/v2/services/repository"


# --------------------------------------------------------------------------- DMP: SOAP 1.2 / WS-Addressing

def _without(body: bytes, name: str) -> bytes:
    out, n = re.subn(rb"<wsa:" + name.encode() + rb"\b[^>]*>[^<]*</wsa:" + name.encode() + rb">", b"", body)
    assert n == 1
    return out


def test_dmp_accepts_the_reference_submission(kos_and_study, signer) -> None:  # noqa: F811
    request = build(kos_and_study, signer)
    sim = DmpSimulator()
    response = sim.handle(REPOSITORY, request.content_type, request.body, CERT)
    assert response.status_code == 200 and sim.exchanges[-1].success


@pytest.mark.parametrize("header", ["Action", "MessageID"])
def test_dmp_refuses_a_request_without_ws_addressing_header(kos_and_study, signer, header) -> None:  # noqa: F811
    """The real DMP (IHE ITI TF-2x appendix V, WS-Addressing 1.0) faults; the simulator used to register it."""
    request = build(kos_and_study, signer)
    sim = DmpSimulator()
    response = sim.handle(REPOSITORY, request.content_type, _without(request.body, header), CERT)
    ex = sim.exchanges[-1]
    assert response.status_code == 400 and b"wsa:MessageAddressingHeaderRequired" in response.body
    assert ex.status == "Fault" and not ex.success and header in ex.parse_error
    assert not sim.registry.snapshot()  # nothing registered
    # still attributed to its study, so that SRC-01 names the refusal among the attempts
    assert ex.kind == "ITI-41" and ex.study_uids == {kos_and_study[1].study_uid}
    assert header in ex.describe()


def test_dmp_refuses_an_action_parameter_that_contradicts_wsa_action(kos_and_study, signer) -> None:  # noqa: F811
    request = build(kos_and_study, signer)
    ctype = request.content_type.replace(xds.ACTION_PNR, xds.ACTION_UPDATE)
    assert ctype != request.content_type
    sim = DmpSimulator()
    response = sim.handle(REPOSITORY, ctype, request.body, CERT)
    assert response.status_code == 400 and b"wsa:ActionMismatch" in response.body
    assert sim.exchanges[-1].status == "Fault" and not sim.registry.snapshot()


def test_dmp_refuses_the_soap_1_1_media_type(kos_and_study, signer) -> None:  # noqa: F811
    """text/xml is SOAP 1.1's media type: a SOAP 1.2 endpoint refuses it (415), the simulator used to accept."""
    request = build(kos_and_study, signer)
    mime = xds.parse_mime(request.content_type, request.body)
    root = mime.root
    for part in mime.parts.values():  # inline the documents: a plain (non-MTOM) SOAP body
        import base64

        root = root.replace(f'<xop:Include xmlns:xop="{xds.NS["xop"]}" href="cid:{part.content_id}"/>'.encode(),
                            base64.b64encode(part.data))
    assert b"xop:Include" not in root
    sim = DmpSimulator()
    accepted = sim.handle(REPOSITORY, "application/soap+xml; charset=UTF-8", root, CERT)
    assert accepted.status_code == 200 and sim.exchanges[-1].success  # non-MTOM SOAP 1.2: tolerated (as Axis2)
    other = build(kos_and_study, signer, kos_uid="1.2.3.4.5.6.7")
    root = xds.parse_mime(other.content_type, other.body).root
    for part in xds.parse_mime(other.content_type, other.body).parts.values():
        import base64

        root = root.replace(f'<xop:Include xmlns:xop="{xds.NS["xop"]}" href="cid:{part.content_id}"/>'.encode(),
                            base64.b64encode(part.data))
    refused = sim.handle(REPOSITORY, "text/xml; charset=UTF-8", root, CERT)
    assert refused.status_code == 415 and sim.exchanges[-1].status == "Fault"
    assert "text/xml" in sim.exchanges[-1].parse_error


# --------------------------------------------------------------------------- IOCM sender (the PACS)

@pytest.mark.parametrize("status, ok", [(0x0000, True), (0xB000, True), (0xB007, True), (0xA700, False),
                                        (0xC000, False)])
def test_iocm_counts_a_warning_status_as_stored(status, ok) -> None:
    """DICOM PS3.4 B.2.3: a Warning (B000, B006, B007) means the object was stored, as a real PACS counts it;
    the simulated PACS used to take it for a failure and stop the scenario."""
    from pynetdicom import AE, evt

    from simulators import iocm
    from tests.test_hostile_server import _note

    scp = AE(ae_title="DUT")
    scp.add_supported_context(iocm.KOS_SOP_CLASS, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: status)])
    try:
        result = iocm.send(_note(), "127.0.0.1", server.server_address[1], "DUT", timeout_s=5)
    finally:
        server.shutdown()
    assert result.status == status and result.ok is ok
    assert (result.error is None) is ok and (ok or f"0x{status:04X}" in result.error)


# --------------------------------------------------------------------------- whitelist endpoint (raw GitHub)

@pytest.fixture(scope="module")
def wl_endpoint(pki):  # noqa: F811
    from simulators.peer_conso import PeerIdentities
    from simulators.whitelist import WhitelistEndpoint, WhitelistVectors

    endpoint = WhitelistEndpoint(WhitelistVectors(pki, PeerIdentities(pki)), pki.serv_ssl("raw.drimcheck.test"))
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _raw_get(endpoint, pki, headers: dict[str, str]):  # noqa: F811
    import http.client
    import ssl

    from simulators.whitelist import LIST_PATH

    ctx = ssl.create_default_context(cafile=str(pki.igc_trust_pem))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", endpoint.port, context=ctx, timeout=10)
    try:
        conn.request("GET", LIST_PATH, headers=headers)  # http.client sends no Accept-Encoding of its own
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_whitelist_answers_like_raw_github(wl_endpoint, pki) -> None:  # noqa: F811
    """raw.githubusercontent.com: strong ETag, 304 to a matching If-None-Match (RFC 9110 §13.1.2), gzip when
    accepted. The simulator used to ignore both, so a DUT mishandling a 304 or a gzip body passed here."""
    import gzip

    status, headers, plain = _raw_get(wl_endpoint, pki, {})
    assert status == 200 and "content-encoding" not in headers and plain.lstrip().startswith(b"<")
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["etag"].startswith('"')
    status, zipped_headers, zipped = _raw_get(wl_endpoint, pki, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and zipped_headers["content-encoding"] == "gzip" and gzip.decompress(zipped) == plain
    assert _raw_get(wl_endpoint, pki, {"Accept-Encoding": "gzip;q=0"})[1].get("content-encoding") is None
    status, headers304, body = _raw_get(wl_endpoint, pki, {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b"" and headers304["etag"] == headers["etag"]
    assert _raw_get(wl_endpoint, pki, {"If-None-Match": '"other"'})[0] == 200
    assert [d.status for d in wl_endpoint.downloads()][-5:] == [200, 200, 200, 304, 200]


def test_wl01_counts_a_revalidation_as_the_daily_refresh() -> None:
    """A DUT that revalidates its list with If-None-Match gets 304 from raw GitHub (and now from the simulator):
    the daily refresh happened, WL-01 must not fail it."""
    from drimcheck.checks import whitelist as wl_checks
    from drimcheck.verdicts import Verdict

    [finding] = wl_checks.downloaded_on_refresh([{"status": 304, "complete": True, "vector": "nominale"}], 5)
    assert finding.verdict == Verdict.PASS and "304" in finding.message
    [finding] = wl_checks.downloaded_on_refresh([{"status": 404, "complete": True}], 5)
    assert finding.verdict == Verdict.FAIL
