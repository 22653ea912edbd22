"""Proxy e-santé simulator: mTLS termination, relaying to PSC and to a generic upstream, fault injection."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from drimcheck import jose
from fixtures.pki import TestPKI
from simulators import proxy as proxy_module
from simulators.httpsim import ClientCert, SimServer
from simulators.proxy import ProxySimulator, TokenExchange
from simulators.psc import GRANT_TOKEN_EXCHANGE, OIDC_PATH, REALM_PATH, TOKEN_TYPE_ACCESS, PscSimulator
from simsupport import TLS_FAILURES, client, stub_runtime

UPSTREAM_FQDN = "dmp.drimcheck.test"
BIG = bytes(range(256)) * 8192  # 2 MiB


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("proxy") / "pki")


@pytest.fixture(scope="module")
def psc(pki):
    with PscSimulator(pki) as sim:
        yield sim


@pytest.fixture(scope="module")
def upstream(pki):
    """A DMP-like HTTPS upstream that echoes what it received (and can stream, stall or fail)."""
    seen: list[dict] = []

    async def echo(request: Request):
        body = await request.body()
        seen.append({"method": request.method, "path": request.url.path, "query": request.url.query,
                     "headers": dict(request.headers), "body": body})
        return JSONResponse({"path": request.url.path, "size": len(body)}, status_code=201,
                            headers={"X-Upstream": "dmp", "Connection": "keep-alive"})

    async def big(request: Request):
        async def chunks():
            for i in range(0, len(BIG), 65536):
                yield BIG[i:i + 65536]
        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def slow(request: Request):
        await asyncio.sleep(1.5)
        return Response("late")

    app = Starlette(routes=[StarletteRoute("/big", big), StarletteRoute("/slow", slow),
                            StarletteRoute("/{p:path}", echo, methods=["GET", "POST", "PUT"])])
    cert = pki.serv_ssl(UPSTREAM_FQDN, organisation="DRIMCHECK DMP TEST")
    with SimServer(app, ssl_context=cert.server_context(client_cas=[pki.igc_chain_pem]), name="upstream") as srv:
        srv.seen = seen
        yield srv


@pytest.fixture(scope="module")
def proxy(pki, psc, upstream):
    sim = ProxySimulator(pki)
    sim.add_route("/psc", psc.base_url, name="psc", hosts=psc.hosts(), trust=[psc.trust_pem])
    hosts = {UPSTREAM_FQDN: upstream.address}
    sim.add_route("/dmp", f"https://{UPSTREAM_FQDN}/si-dmp-server/v2/services", name="dmp", hosts=hosts)
    sim.add_route("/slow", f"https://{UPSTREAM_FQDN}/slow", name="slow", hosts=hosts, timeout_s=0.5)
    sim.add_route("/down", "https://nowhere.drimcheck.test", name="down", hosts={"nowhere.drimcheck.test": "127.0.0.1:9"})
    sim.add_route("/xdmp", f"https://{UPSTREAM_FQDN}/exchanged", name="xdmp", hosts=hosts,
                  exchange=TokenExchange(via="psc", audience="dmp"))
    psc.register_client("app", tls_subject_dns=[pki.org_auth_cli().subject_dn, sim.client_cert.subject_dn])
    psc.register_client("proxy-esante", secret=None, tls_subject_dns=[sim.client_cert.subject_dn])
    with sim:
        yield sim


@pytest.fixture
def dut(proxy, pki):
    """The DUT's side: its ORG AUTH_CLI certificate, trusting IGC-Santé."""
    with client(proxy.hosts(), [proxy.trust_pem], pki.org_auth_cli()) as h:
        yield h


@pytest.fixture(autouse=True)
def _nominal(proxy, psc):
    yield
    proxy.clear_faults()
    psc.clear_faults()


def exchange_form(psc) -> dict:
    return {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": psc.issue_token(client_id="app").access_token,
            "subject_token_type": TOKEN_TYPE_ACCESS, "client_id": "app"}


def test_relays_psc_with_mtls_on_both_legs(proxy, psc, pki, dut) -> None:
    doc = dut.get(proxy.url_for("psc", REALM_PATH + "/.well-known/openid-configuration"))
    assert doc.status_code == 200 and doc.json()["issuer"] == psc.issuer
    after = psc.recorder.last_seq
    token = psc.issue_token(client_id="app").access_token
    # the DUT sends only client_id: PSC authenticates the proxy's certificate (RFC 8705)
    resp = dut.post(proxy.url_for("psc", OIDC_PATH + "/token/introspect"), data={"token": token, "client_id": "app"})
    assert resp.status_code == 200 and resp.json()["active"] is True
    seen_by_psc = psc.wait_for(lambda e: e["endpoint"] == "introspect", timeout_s=2, after=after)
    assert seen_by_psc["tls"]["client_cert"]["subject"] == proxy.client_cert.subject_dn
    assert seen_by_psc["facts"]["client_auth"]["method"] == "tls_client_auth"
    forwarded = dict(seen_by_psc["request"]["headers"])
    assert pki.org_auth_cli().subject_dn in forwarded["x-forwarded-client-cert"]
    assert forwarded["x-forwarded-proto"] == "https" and forwarded["host"].startswith(psc.fqdn)
    entry = proxy.requests[-1]
    assert entry["route"] == "psc" and entry["upstream_status"] == 200 and entry["complete"] is True
    assert entry["upstream_url"] == psc.endpoint("introspect")
    assert entry["tls"]["client_cert"]["subject"] == pki.org_auth_cli().subject_dn
    assert entry["tls"]["sni"] == proxy.fqdn
    assert token not in json.dumps(proxy.requests)


def test_token_obtained_through_the_proxy_is_bound_to_the_proxy_certificate(proxy, psc, dut) -> None:
    form = exchange_form(psc)
    resp = dut.post(proxy.url_for("psc", OIDC_PATH + "/token"), data=form)
    assert resp.status_code == 200, resp.text
    der = proxy.client_cert.cert.public_bytes(Encoding.DER)
    assert psc.verify(resp.json()["access_token"])["cnf"] == {"x5t#S256": ClientCert.from_der(der).x5t_s256}
    assert proxy.requests[-1]["grant_type"] == GRANT_TOKEN_EXCHANGE


def test_client_certificate_is_required(proxy, pki) -> None:
    with client(proxy.hosts(), [proxy.trust_pem]) as anonymous:
        resp = anonymous.get(proxy.url_for("psc", REALM_PATH))
    assert resp.status_code == 403 and resp.json()["error"] == "client_certificate_required"
    entry = proxy.requests[-1]
    assert entry["refused"] == "no_client_cert" and entry["tls"]["client_cert"] is None and entry["route"] is None
    strict = ProxySimulator(pki, fqdn="strict.proxy.drimcheck.test", tls_require_client_cert=True,
                            allowed_client_dns=[pki.org_auth_cli().subject_dn])
    strict.add_route("/x", "https://nowhere.drimcheck.test")
    with strict:
        with client(strict.hosts(), [strict.trust_pem]) as anonymous:
            with pytest.raises(TLS_FAILURES):
                anonymous.get(strict.base_url + "/x")
        with client(strict.hosts(), [strict.trust_pem], pki.serv_ssl("db1.349.mesimagesmedicales.fr")) as other:
            resp = other.get(strict.base_url + "/x")
            assert resp.status_code == 403 and strict.requests[-1]["refused"] == "client_dn_not_allowed"


def test_unknown_route_is_404(proxy, dut) -> None:
    resp = dut.get(proxy.base_url + "/nowhere/x")
    assert resp.status_code == 404 and proxy.requests[-1]["route"] is None


def test_psc_unavailable_fault(proxy, psc, dut) -> None:
    url = proxy.url_for("psc", REALM_PATH + "/.well-known/openid-configuration")
    proxy.set_unavailable("psc")
    after = psc.recorder.last_seq
    resp = dut.get(url)
    assert resp.status_code == 503
    assert proxy.requests[-1]["fault"] == "route:503" and proxy.requests[-1]["upstream_url"] is None
    assert psc.wait_for(lambda e: True, timeout_s=0.2, after=after) is None  # nothing reached PSC
    assert dut.get(proxy.url_for("dmp", "/registry")).status_code == 201  # other routes unaffected
    proxy.set_unavailable("psc", False)
    assert dut.get(url).status_code == 200
    with pytest.raises(KeyError):
        proxy.set_unavailable("nope")


def test_token_exchange_refused(proxy, psc, dut) -> None:
    url = proxy.url_for("psc", OIDC_PATH + "/token")
    proxy.refuse_token_exchange()
    after = psc.recorder.last_seq
    resp = dut.post(url, data=exchange_form(psc))
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_request", "error_description": "token exchange refused"}
    assert proxy.requests[-1]["fault"] == "token_exchange_refused"
    assert psc.wait_for(lambda e: True, timeout_s=0.2, after=after) is None
    intro = dut.post(proxy.url_for("psc", OIDC_PATH + "/token/introspect"),
                     data={"token": "x", "client_id": "app"})
    assert intro.status_code == 200  # only RFC 8693 requests are refused
    proxy.refuse_token_exchange(status=401)
    resp = dut.post(url, data=exchange_form(psc))
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    assert resp.headers["www-authenticate"].startswith("Basic")
    proxy.refuse_token_exchange(False)
    assert dut.post(url, data=exchange_form(psc)).status_code == 200


def test_generic_relay_to_another_upstream(proxy, upstream, dut) -> None:
    upstream.seen.clear()
    resp = dut.post(proxy.url_for("dmp", "/registry?x=1&y=%C3%A9"), content=b"<soap/>",
                    headers={"Content-Type": "application/soap+xml", "SOAPAction": "urn:ihe:iti:2007:RegistryStoredQuery",
                             "Connection": "keep-alive, X-Secret", "TE": "trailers"})
    assert resp.status_code == 201 and resp.json() == {"path": "/si-dmp-server/v2/services/registry", "size": 7}
    assert resp.headers["x-upstream"] == "dmp"
    got = upstream.seen[-1]
    assert got["method"] == "POST" and got["query"] == "x=1&y=%C3%A9" and got["body"] == b"<soap/>"
    assert got["headers"]["soapaction"] == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert got["headers"]["host"] == UPSTREAM_FQDN and "te" not in got["headers"]
    assert 'Subject="CN=DRIMbox' in got["headers"]["x-forwarded-client-cert"]
    assert dut.get(proxy.base_url + "/dmp").status_code == 201  # the bare prefix maps to the upstream root
    entry = proxy.requests[-1]
    assert entry["upstream_url"] == f"https://{UPSTREAM_FQDN}/si-dmp-server/v2/services"


def test_large_bodies_are_streamed_intact(proxy, pki, upstream, dut) -> None:
    proxy.add_route("/raw", f"https://{UPSTREAM_FQDN}", name="raw", hosts={UPSTREAM_FQDN: upstream.address})
    resp = dut.get(proxy.url_for("raw", "/big"))
    assert resp.status_code == 200 and resp.content == BIG
    entry = proxy.requests[-1]
    assert entry["response_bytes"] == len(BIG) and entry["response"]["body"]["truncated"] is True


def test_upstream_down_or_slow(proxy, dut) -> None:
    resp = dut.get(proxy.url_for("down", "/x"))
    assert resp.status_code == 502 and proxy.requests[-1]["upstream_error"]
    resp = dut.get(proxy.url_for("slow"))
    assert resp.status_code == 504


def test_route_with_token_exchange(proxy, psc, upstream, dut) -> None:
    upstream.seen.clear()
    subject = psc.issue_token(client_id="app").access_token
    resp = dut.get(proxy.url_for("xdmp", "/doc"), headers={"Authorization": f"Bearer {subject}"})
    assert resp.status_code == 201
    sent = upstream.seen[-1]["headers"]["authorization"].split(" ", 1)[1]
    assert sent != subject
    claims = psc.verify(sent)
    assert claims["aud"] == "dmp" and claims["azp"] == "proxy-esante"
    assert claims["sub"] == psc.verify(subject)["sub"]
    assert psc.introspect(sent)["active"] is True
    exchange_entry = next(e for e in reversed(proxy.requests) if e.get("kind") == "token_exchange")
    assert exchange_entry["status"] == 200 and exchange_entry["issued"]["fingerprint"] == jose.fingerprint(sent)
    # refused exchange: the caller gets 401 and the upstream is not called
    upstream.seen.clear()
    proxy.refuse_token_exchange()
    resp = dut.get(proxy.url_for("xdmp", "/doc"), headers={"Authorization": f"Bearer {subject}"})
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert upstream.seen == []
    proxy.refuse_token_exchange(False)
    # inactive subject token: PSC refuses, the proxy answers 401
    psc.revoke(subject)
    assert dut.get(proxy.url_for("xdmp", "/doc"), headers={"Authorization": f"Bearer {subject}"}).status_code == 401
    assert dut.get(proxy.url_for("xdmp", "/doc")).status_code == 401
    assert upstream.seen == []


def test_start_for_campaign_wires_the_psc_route(pki, psc) -> None:
    from simulators import psc as psc_module

    runtime = stub_runtime(pki)
    campaign_psc = psc_module.start_for_campaign(runtime)
    runtime.sims["psc"] = campaign_psc
    sim = proxy_module.start_for_campaign(runtime)
    try:
        settings = sim.dut_settings()
        assert settings["routes"] == {"psc": sim.base_url + "/psc"}
        assert settings["psc"]["token_endpoint"] == sim.base_url + "/psc" + OIDC_PATH + "/token"
        assert sim.client_cert.subject_dn in campaign_psc.client("drimbox-dut").tls_subject_dns
        with client(sim.hosts(), [sim.trust_pem], pki.org_auth_cli()) as h:
            token = campaign_psc.issue_token().access_token
            resp = h.post(settings["psc"]["introspection_endpoint"], data={"token": token, "client_id": "drimbox-dut"})
            assert resp.status_code == 200 and resp.json()["active"] is True
    finally:
        sim.stop()
        campaign_psc.stop()


def test_dut_settings_offer_psc_revocation_through_the_proxy(proxy, psc, dut) -> None:
    """PSC (Keycloak) serves RFC 7009 revocation; the proxy relays it and tells the DUT where (issue 15)."""
    settings = proxy.dut_settings()["psc"]
    assert settings["revocation_endpoint"] == proxy.url_for("psc", OIDC_PATH + "/revoke")
    token = psc.issue_token(client_id="app").access_token
    introspect = settings["introspection_endpoint"]
    assert dut.post(introspect, data={"token": token, "client_id": "app"}).json()["active"] is True
    resp = dut.post(settings["revocation_endpoint"], data={"token": token, "token_type_hint": "access_token",
                                                           "client_id": "app"})
    assert resp.status_code == 200 and proxy.requests[-1]["upstream_url"] == psc.endpoint("revoke")
    assert dut.post(introspect, data={"token": token, "client_id": "app"}).json() == {"active": False}
