"""Fidelity: a real DICOMweb client (dicomweb-client, the library many DRIMbox Consos are built with) is served
by the peer Source simulator and by the reference DRIMbox's Source, whatever Accept it sends.

dicomweb-client sends DICOM PS3.18 §8.7.3 Accept values without q nor boundary:
``multipart/related; type="application/dicom"`` by default (no transfer-syntax: Explicit VR Little
Endian), ``...; transfer-syntax=<uid>`` when asked for a syntax, ``...; transfer-syntax=*`` for any,
several ranges joined by commas (its retrieve_series/retrieve_instance refuse two application/dicom
ranges in 0.61.2, so lists are tested with the raw Accept in test_peer_source.py and test_wado.py). Both Sources must answer them (before issue 15 they answered 400:
they demanded the ANS validator sample's shape), in an accepted syntax they declare (PS3.18
§8.7.3.4), and 406 when nothing acceptable can be produced (PS3.18 §8.7).

The reference Source runs in-process (simulators/drimbox/wado.Function, its own code) on a real TLS
listener in front of a real Orthanc; its mTLS and PSC guards are left out here (they are judged by the
campaign: MTLS-01, PSC-01), the Accept and KOS guards are kept.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

dicomweb_client = pytest.importorskip("dicomweb_client")
requests = pytest.importorskip("requests")

from simulators.pacs import Orthanc, OrthancConfig, make_study  # noqa: E402
from simulators.pacs import orthanc as orthanc_module  # noqa: E402

pytestmark = pytest.mark.slow
if not Path(orthanc_module.DEFAULT_BINARY).exists():
    pytest.skip("Debian package orthanc not installed", allow_module_level=True)

PEER = "db7.350.mesimagesmedicales.fr"
REFERENCE = "db1.349.mesimagesmedicales.fr"
EXPLICIT_VR_LE, JPEG_LOSSLESS, JPEG_LS = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80"
JPEG_2000 = "1.2.840.10008.1.2.4.90"  # Debian's Orthanc cannot encode it: 406 from both Sources


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from fixtures.pki import TestPKI

    return TestPKI(tmp_path_factory.mktemp("fidelity") / "pki")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    pacs = Orthanc(OrthancConfig(aet="FIDELITY_PACS"), tmp_path_factory.mktemp("fidelity-pacs"))
    pacs.start()
    yield pacs
    pacs.stop(graceful=False)


@pytest.fixture(scope="module")
def study(orthanc):
    s = make_study("fidelity-dicomweb", n_series=1, n_instances=2, rows=32, columns=32)
    orthanc.store(s.datasets())
    return s


@pytest.fixture(scope="module")
def psc(pki):
    from simulators.psc import PscSimulator

    with PscSimulator(pki) as sim:
        yield sim


@pytest.fixture(scope="module")
def peer(pki, orthanc, psc, study):
    from simulators.peer_source import PeerSource

    with PeerSource(pki, orthanc, fqdn=PEER, psc=psc) as sim:
        sim.kos_uid = sim.register_study(study, store=False).sop_uid
        yield sim


@pytest.fixture(scope="module")
def reference(pki, orthanc, study):
    """The reference DRIMbox's WADO-RS function (its own Accept parser, negotiation, Orthanc transcoding)."""
    from starlette.applications import Starlette

    from simulators.drimbox import wado
    from simulators.drimbox.service import PacsLink
    from simulators.httpsim import SimServer

    kos_uid = "1.2.250.1.999.15.1"
    series = {s.series_uid: [i.sop_uid for i in s.instances] for s in study.series}
    source = SimpleNamespace(kos_in_force=lambda uid: (study.study_uid, series) if uid == kos_uid else None)
    link = PacsLink("pacs1", REFERENCE, "vi1.349.mesimagesmedicales.fr", "FIDELITY_PACS", "127.0.0.1", 0,
                    orthanc.base_url, *orthanc.auth)
    box = SimpleNamespace(function=lambda name: source if name == "source" else None,
                          config=SimpleNamespace(pacs=[link]))
    function = wado.Function(box)
    function.guards = [function.require_valid_accept, function.require_matching_kos]
    server = SimServer(Starlette(routes=function.routes()[("db", "https")]),
                       ssl_context=pki.serv_ssl(REFERENCE).server_context(), name="reference-wado")
    server.start()
    try:
        yield SimpleNamespace(hosts={REFERENCE: server.address}, kos_uid=kos_uid,
                              wado_base=f"https://{REFERENCE}{wado.WADO_ROOT}")
    finally:
        server.stop()
        function.stop()


@pytest.fixture(params=["peer", "reference"])
def source(request, peer, reference, psc):
    """(hosts map, WADO-RS base, headers the DRIMbox exchange adds: Bearer and KOS-SOPInstanceUID)."""
    if request.param == "peer":
        token = psc.issue_token().access_token
        return request.param, peer.hosts(), peer.wado_base, {"Authorization": f"Bearer {token}",
                                                              "KOS-SOPInstanceUID": peer.kos_uid}
    return request.param, reference.hosts, reference.wado_base, {"KOS-SOPInstanceUID": reference.kos_uid}


@pytest.fixture
def dicomweb(source, pki, monkeypatch):
    """A dicomweb-client DICOMwebClient reaching the Source's FQDN (name mapped to its loopback address,
    TLS verified against IGC-Santé); ``.content_types`` records each response's Content-Type."""
    import urllib3.util.connection as connection

    name, hosts, base, headers = source
    real = connection.create_connection

    def mapped(address, *args, **kwargs):
        host, port = address
        if host in hosts:
            ip, _, mapped_port = hosts[host].rpartition(":")
            address = (ip.strip("[]"), int(mapped_port))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(connection, "create_connection", mapped)
    session = requests.Session()
    session.verify = str(pki.igc_trust_pem)
    session.trust_env = False
    seen: list[str] = []
    session.hooks["response"].append(lambda r, *a, **k: seen.append(r.headers.get("content-type", "")))
    client = dicomweb_client.DICOMwebClient(url=base, session=session, headers=headers)
    client.content_types = seen
    client.source_name = name
    return client


def _declared(content_type: str) -> str | None:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "transfer-syntax":
            return value.strip('"')
    return None


def _retrieve(client, study, **kw):
    return client.retrieve_series(study.study_uid, study.series[0].series_uid, **kw)


def _expected(study) -> set[str]:
    return {i.sop_uid for i in study.series[0].instances}


def test_default_accept_is_explicit_vr_little_endian(dicomweb, study) -> None:
    datasets = _retrieve(dicomweb, study)  # Accept: multipart/related; type="application/dicom"
    assert {str(ds.SOPInstanceUID) for ds in datasets} == _expected(study)
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in datasets} == {EXPLICIT_VR_LE}
    assert _declared(dicomweb.content_types[-1]) in (None, EXPLICIT_VR_LE)


@pytest.mark.parametrize("ts", [JPEG_LOSSLESS, JPEG_LS, EXPLICIT_VR_LE])
def test_explicit_transfer_syntax_is_served_and_declared(dicomweb, study, ts) -> None:
    datasets = _retrieve(dicomweb, study, media_types=(("application/dicom", ts),))
    assert {str(ds.SOPInstanceUID) for ds in datasets} == _expected(study)
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in datasets} == {ts}
    assert _declared(dicomweb.content_types[-1]) == ts


def test_any_transfer_syntax(dicomweb, study) -> None:
    datasets = _retrieve(dicomweb, study, media_types=(("application/dicom", "*"),))
    served = {str(ds.file_meta.TransferSyntaxUID) for ds in datasets}
    assert {str(ds.SOPInstanceUID) for ds in datasets} == _expected(study) and len(served) == 1
    assert _declared(dicomweb.content_types[-1]) in served  # the syntax chosen, never "*"


def test_nothing_acceptable_is_406(dicomweb, study) -> None:
    with pytest.raises(requests.HTTPError) as caught:
        _retrieve(dicomweb, study, media_types=(("application/dicom", JPEG_2000),))
    assert caught.value.response.status_code == 406


def test_instance_level_default_accept(dicomweb, study) -> None:
    inst = study.series[0].instances[0]
    ds = dicomweb.retrieve_instance(study.study_uid, study.series[0].series_uid, inst.sop_uid)
    assert str(ds.SOPInstanceUID) == inst.sop_uid and str(ds.file_meta.TransferSyntaxUID) == EXPLICIT_VR_LE
