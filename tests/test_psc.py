"""Pro Santé Connect simulator, end to end over real HTTPS sockets (httpx as the relying party)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from drimcheck import jose
from fixtures.pki import TestPKI
from simulators import psc as psc_module
from simulators.psc import DEFAULT_PRACTITIONER, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, Activity, Exercice, \
    Practitioner, PscSimulator
from simulators.httpsim import ClientCert
from simsupport import APP_REDIRECT, client, code_flow, login, stub_runtime

SPEC_63_CLAIMS = {"exp", "iat", "auth_time", "jti", "iss", "sub", "typ", "azp", "nonce", "session_state", "sid",
                  "acr", "scope", "preferred_username", "email_verified", "aud"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("psc") / "pki")


@pytest.fixture(scope="module")
def psc(pki):
    sim = PscSimulator(pki)
    sim.register_client("app", redirect_uris=["https://vi1.349.mesimagesmedicales.fr/api/*"],
                        tls_subject_dns=[pki.org_auth_cli().subject_dn])
    with sim:
        yield sim


@pytest.fixture
def http(psc):
    with client(psc.hosts(), [psc.trust_pem]) as h:
        yield h


@pytest.fixture
def mtls(psc, pki):
    with client(psc.hosts(), [psc.trust_pem], pki.org_auth_cli()) as h:
        yield h


@pytest.fixture(autouse=True)
def _nominal(psc):
    yield
    psc.clear_faults()
    psc.clock_offset_s = 0.0
    psc.login_as(None)


def secret(psc) -> str:
    return psc.client("app").secret


def introspect(http, psc, token: str) -> dict:
    resp = http.post(psc.endpoint("introspect"), data={"token": token}, auth=("app", secret(psc)))
    assert resp.status_code == 200, resp.text
    return resp.json()


# ----------------------------------------------------------------------------------------- discovery, JWKS


def test_discovery_is_keycloak_shaped_at_the_real_psc_paths(psc, http) -> None:
    doc = http.get(psc.discovery_url).json()
    assert psc.issuer == f"https://auth.psc.drimcheck.test:{psc.port}/auth/realms/esante-wallet"
    assert doc["issuer"] == psc.issuer
    base = psc.issuer + "/protocol/openid-connect"
    assert doc["authorization_endpoint"] == f"https://wallet.psc.drimcheck.test:{psc.port}/auth"
    assert doc["token_endpoint"] == base + "/token"
    assert doc["introspection_endpoint"] == base + "/token/introspect"
    assert doc["userinfo_endpoint"] == base + "/userinfo" and doc["end_session_endpoint"] == base + "/logout"
    assert doc["jwks_uri"] == base + "/certs"
    assert GRANT_TOKEN_EXCHANGE in doc["grant_types_supported"] and "refresh_token" in doc["grant_types_supported"]
    assert "tls_client_auth" in doc["introspection_endpoint_auth_methods_supported"]
    assert doc["tls_client_certificate_bound_access_tokens"] is True and doc["acr_values_supported"] == ["eidas1"]
    assert http.get(psc.issuer + "/.well-known/wallet-openid-configuration").json() == doc
    assert http.get(psc.issuer).json()["realm"] == "esante-wallet"


def test_tokens_verify_against_the_published_jwks(psc, http) -> None:
    jwks = http.get(psc.endpoint("certs")).json()
    assert [k["kid"] for k in jwks["keys"]] == [psc.kid]
    tokens = code_flow(http, psc, secret(psc))
    for name in ("access_token", "id_token", "refresh_token"):
        header, _ = jose.decode_unverified(tokens[name])
        assert header["alg"] == "RS256" and header["kid"] == psc.kid
        jose.verify_rs256(tokens[name], jwks)
    other = PscSimulator(psc.pki, fqdn="other.psc.drimcheck.test")  # another run: another key
    with pytest.raises(jose.JoseError):
        jose.verify_rs256(other.issue_token().access_token, jwks)


# ----------------------------------------------------------------------------------------- authorization code


def test_authorization_code_flow_end_to_end(psc, http) -> None:
    redirect = login(http, psc, nonce="n-123", state="s-456")
    assert list(redirect) == ["state", "session_state", "iss", "code"]  # Keycloak's order
    assert redirect["state"] == "s-456" and redirect["iss"] == psc.issuer
    resp = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                     data={"grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": APP_REDIRECT})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == psc.access_lifetime_s
    assert body["session_state"] == redirect["session_state"] and body["scope"] == "openid scope_all"
    access = psc.verify(body["access_token"])
    assert SPEC_63_CLAIMS <= set(access)
    assert access["nonce"] == "n-123" and access["acr"] == "eidas1" and access["typ"] == "Bearer"
    assert access["iss"] == psc.issuer and access["azp"] == "app" and access["aud"] == "app"
    assert access["sid"] == access["session_state"] == redirect["session_state"]
    assert access["sub"] == DEFAULT_PRACTITIONER.sub and access["preferred_username"] == DEFAULT_PRACTITIONER.idnat
    assert access["exp"] - access["iat"] == psc.access_lifetime_s
    id_token = psc.verify(body["id_token"])
    assert id_token["typ"] == "ID" and id_token["nonce"] == "n-123" and id_token["aud"] == "app"
    assert id_token["at_hash"] == jose.at_hash(body["access_token"])
    assert psc.verify(body["refresh_token"])["typ"] == "Refresh"
    # the PoC's way: client_secret_post with a fresh code
    code = login(http, psc)["code"]
    resp = http.post(psc.endpoint("token"), data={"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": APP_REDIRECT, "client_id": "app",
                                                  "client_secret": secret(psc)})
    assert resp.status_code == 200
    entry = psc.requests_for("token")[-1]
    assert entry["facts"]["client_auth"] == {"method": "client_secret_post", "client_id": "app", "ok": True,
                                             "cert_subject": None}


def test_userinfo_is_shaped_as_psc(psc, http) -> None:
    token = code_flow(http, psc, secret(psc))["access_token"]
    for resp in (http.get(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {token}"}),
                 http.post(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {token}"})):
        assert resp.status_code == 200
        info = resp.json()
        assert info["SubjectNameID"] == DEFAULT_PRACTITIONER.idnat and info["sub"] == DEFAULT_PRACTITIONER.sub
        exercice = info["SubjectRefPro"]["exercices"][0]
        for key in ("codeProfession", "codeSavoirFaire", "prenomDexercice", "nomDexercice"):
            assert exercice[key]
        activity = exercice["activities"][0]
        assert activity["ancienIdentifiantDeLaStructure"] == "300000009990349"
        assert activity["raisonSocialeSite"] == "DRIMCHECK CENTRE IMAGERIE TEST" and activity["codeSecteurDactivite"]
    assert http.get(psc.endpoint("userinfo")).status_code == 401
    bad = http.get(psc.endpoint("userinfo"), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_login_as_another_practitioner(psc, http) -> None:
    other = Practitioner("899700990777", "MANIPULATEUR0990777", "PAUL", (Exercice(
        "MANIPULATEUR0990777", "PAUL", (Activity("CLINIQUE DRIMCHECK", "1750099777"),), code_profession="60"),))
    psc.login_as(other)
    tokens = code_flow(http, psc, secret(psc))
    assert psc.verify(tokens["access_token"])["preferred_username"] == "899700990777"
    info = http.get(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info["SubjectRefPro"]["exercices"][0]["codeProfession"] == "60"


def test_pkce_is_enforced_when_used(psc, http) -> None:
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

    def token(code: str, **extra: str):
        return http.post(psc.endpoint("token"), auth=("app", secret(psc)), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT, **extra})

    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    assert token(login(http, psc, **pkce)["code"], code_verifier=verifier).status_code == 200
    assert token(login(http, psc, **pkce)["code"], code_verifier="w" * 50).json()["error"] == "invalid_grant"
    assert token(login(http, psc, **pkce)["code"]).json()["error_description"] == "PKCE verifier not specified"


@pytest.mark.parametrize("params, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "scope_all"}, "invalid_scope"),
    ({"nonce": ""}, "invalid_request"),
    ({"code_challenge": "x", "code_challenge_method": "S512"}, "invalid_request"),
])
def test_authorization_errors_are_redirected_with_state(psc, http, params, error) -> None:
    base = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid scope_all",
            "state": "st", "nonce": "n"}
    resp = http.get(psc.endpoint("auth"), params={**base, **params})
    assert resp.status_code == 302
    assert resp.headers["location"].startswith(APP_REDIRECT + "?state=st&error=" + error)
    assert psc.requests_for("auth")[-1]["facts"]["outcome"] == error


def test_authorization_refuses_unknown_client_or_redirect_without_redirecting(psc, http) -> None:
    base = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
            "nonce": "n"}
    for params in ({"client_id": "nobody"}, {"redirect_uri": "https://evil.example/cb"}, {"redirect_uri": ""}):
        resp = http.get(psc.endpoint("auth"), params={**base, **params})
        assert resp.status_code == 400 and "location" not in resp.headers
    psc.refuse_next_login()
    resp = http.get(psc.endpoint("auth"), params=base)
    assert "error=access_denied" in resp.headers["location"]
    assert login(http, psc)["code"]  # only the next login was refused


def test_code_is_single_use_and_replay_revokes_its_tokens(psc, http) -> None:
    code = login(http, psc)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT}
    first = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=form).json()
    assert introspect(http, psc, first["access_token"])["active"] is True
    replay = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert introspect(http, psc, first["access_token"]) == {"active": False}
    wrong_redirect = {**form, "code": login(http, psc)["code"], "redirect_uri": APP_REDIRECT + "x"}
    assert http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=wrong_redirect).json()["error"] == \
        "invalid_grant"


# ----------------------------------------------------------------------------------------- refresh, exchange


def test_refresh_token_grant(psc, http) -> None:
    tokens = code_flow(http, psc, secret(psc))
    resp = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                     data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 200
    renewed = resp.json()
    assert renewed["access_token"] != tokens["access_token"] and renewed["session_state"] == tokens["session_state"]
    assert psc.token_info(renewed["access_token"]).parent_jti == psc.token_info(tokens["refresh_token"]).jti
    narrower = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                         data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                               "scope": "openid scope_all extra"})
    assert narrower.json()["error"] == "invalid_scope"
    drimcheck_secret = psc.client("drimcheck").secret
    other_client = http.post(psc.endpoint("token"), auth=("drimcheck", drimcheck_secret),
                             data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert other_client.json()["error"] == "invalid_grant"
    garbage = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                        data={"grant_type": "refresh_token", "refresh_token": tokens["access_token"]})
    assert garbage.json()["error"] == "invalid_grant"
    assert http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                     data={"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    twice = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                      content=b"grant_type=refresh_token&grant_type=refresh_token",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.json()["error"] == "invalid_request"


def test_token_exchange_rfc8693(psc, http) -> None:
    subject = code_flow(http, psc, secret(psc))["access_token"]
    actor = psc.issue_token(client_id="drimcheck").access_token
    resp = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data={
        "grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": TOKEN_TYPE_ACCESS,
        "audience": "dmp", "scope": "openid", "actor_token": actor,
        "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS and body["token_type"] == "Bearer"
    assert body["scope"] == "openid" and "refresh_token" not in body
    claims = psc.verify(body["access_token"])
    subject_claims = psc.verify(subject)
    assert claims["aud"] == "dmp" and claims["sub"] == subject_claims["sub"] and claims["sid"] == subject_claims["sid"]
    assert claims["act"] == {"sub": DEFAULT_PRACTITIONER.sub} and claims["typ"] == "Bearer"
    info = introspect(http, psc, body["access_token"])
    assert info["active"] is True and info["aud"] == "dmp" and info["SubjectNameID"] == DEFAULT_PRACTITIONER.idnat
    assert psc.token_info(body["access_token"]).parent_jti == subject_claims["jti"]
    assert psc.token_info(body["access_token"]).grant == "token-exchange"


@pytest.mark.parametrize("change, error", [
    ({"subject_token": "not-a-token"}, "invalid_request"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
    ({"subject_token_type": None}, "invalid_request"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
    ({"scope": "openid scope_all dmp_write"}, "invalid_scope"),
    ({"actor_token": "x.y.z"}, "invalid_request"),
])
def test_token_exchange_errors(psc, http, change, error) -> None:
    subject = psc.issue_token(client_id="app").access_token
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": TOKEN_TYPE_ACCESS,
            **change}
    resp = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                     data={k: v for k, v in form.items() if v is not None})
    assert resp.status_code == 400 and resp.json()["error"] == error


def test_exchange_of_a_revoked_subject_and_injected_refusal(psc, http) -> None:
    subject = psc.issue_token(client_id="app").access_token
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": TOKEN_TYPE_ACCESS}
    psc.set_fault("token-exchange", 400, "invalid_target", "audience refused")
    refused = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=form)
    assert refused.status_code == 400 and refused.json() == {"error": "invalid_target",
                                                             "error_description": "audience refused"}
    assert psc.requests_for("token")[-1]["fault"] == "token-exchange"
    code_grant = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                           data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert code_grant.json()["error"] == "invalid_grant"  # other grants unaffected by the exchange fault
    psc.clear_faults()
    assert http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=form).status_code == 200
    psc.revoke(subject)
    assert http.post(psc.endpoint("token"), auth=("app", secret(psc)), data=form).json()["error"] == "invalid_request"


# ----------------------------------------------------------------------------------------- introspection


def test_introspection_states(psc, http) -> None:
    tokens = psc.issue_token(client_id="app")
    active = introspect(http, psc, tokens.access_token)
    assert active["active"] is True and active["client_id"] == "app" and active["token_type"] == "Bearer"
    assert active["SubjectNameID"] == DEFAULT_PRACTITIONER.idnat and active["username"] == DEFAULT_PRACTITIONER.idnat
    refresh = introspect(http, psc, tokens.refresh_token)
    assert refresh["active"] is True and refresh["token_type"] == "Refresh" and "SubjectNameID" not in refresh
    assert introspect(http, psc, "garbage") == {"active": False}
    forged = jose.sign_rs256(psc.verify(tokens.access_token), psc._key)  # same claims, no kid: not issued
    assert introspect(http, psc, forged) == {"active": False}
    # signed exp already past
    assert introspect(http, psc, psc.issue_token(client_id="app", lifetime_s=0).access_token) == {"active": False}
    # expired by the scenario, then revoked, then the clock moved past exp
    t2 = psc.issue_token(client_id="app")
    assert psc.expire(t2.access_token) == 1 and introspect(http, psc, t2.access_token) == {"active": False}
    t3 = psc.issue_token(client_id="app")
    assert psc.revoke(psc.verify(t3.access_token)["jti"]) == 1
    assert introspect(http, psc, t3.access_token) == {"active": False}
    assert psc.token_info(t3.access_token).state(psc.now()) == "revoked"
    t4 = psc.issue_token(client_id="app")
    psc.clock_offset_s = psc.access_lifetime_s + 1
    assert introspect(http, psc, t4.access_token) == {"active": False}
    assert introspect(http, psc, t4.refresh_token)["active"] is True  # refresh lives longer
    facts = psc.requests_for("introspect")[-1]["facts"]
    assert facts["active"] is True and facts["presented"]["claims"]["typ"] == "Refresh"


def test_logout_revokes_the_session_backchannel_and_frontchannel(psc, http) -> None:
    tokens = code_flow(http, psc, secret(psc))
    resp = http.post(psc.endpoint("logout"), auth=("app", secret(psc)), data={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 204
    for name in ("access_token", "refresh_token"):
        assert introspect(http, psc, tokens[name]) == {"active": False}
    assert http.get(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}
                    ).status_code == 401
    again = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                      data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert again.json()["error"] == "invalid_grant"
    # front channel: id_token_hint + post_logout_redirect_uri
    tokens = code_flow(http, psc, secret(psc))
    back = "https://vi1.349.mesimagesmedicales.fr/api/logged-out"
    resp = http.get(psc.endpoint("logout"), params={"id_token_hint": tokens["id_token"],
                                                    "post_logout_redirect_uri": back, "state": "bye"})
    assert resp.status_code == 302 and resp.headers["location"] == back + "?state=bye"
    assert introspect(http, psc, tokens["access_token"]) == {"active": False}
    assert http.get(psc.endpoint("logout")).status_code == 200  # Keycloak: confirmation page (confirmed at once)
    evil = http.get(psc.endpoint("logout"), params={"id_token_hint": code_flow(http, psc, secret(psc))["id_token"],
                                                    "post_logout_redirect_uri": "https://evil.example/"})
    assert evil.status_code == 400
    # scenario API
    t = psc.issue_token(client_id="app")
    assert psc.logout_session(t.sid) >= 3 and introspect(http, psc, t.access_token) == {"active": False}


# ----------------------------------------------------------------------------------------- client authentication


def test_mtls_client_authentication_rfc8705(psc, pki, http, mtls) -> None:
    token = psc.issue_token(client_id="app").access_token
    resp = mtls.post(psc.endpoint("introspect"), data={"token": token, "client_id": "app"})
    assert resp.status_code == 200 and resp.json()["active"] is True
    auth = psc.requests_for("introspect")[-1]["facts"]["client_auth"]
    assert auth["method"] == "tls_client_auth" and auth["ok"] is True
    assert auth["cert_subject"] == pki.org_auth_cli().subject_dn
    # no client_id: RFC 8705 requires it
    resp = mtls.post(psc.endpoint("introspect"), data={"token": token})
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    # a valid IGC certificate that is not registered for the client
    with client(psc.hosts(), [psc.trust_pem], pki.serv_ssl("db5.349.mesimagesmedicales.fr")) as other:
        resp = other.post(psc.endpoint("introspect"), data={"token": token, "client_id": "app"})
        assert resp.status_code == 401
        assert psc.requests_for("introspect")[-1]["facts"]["client_auth"]["failure"] == \
            "client certificate subject DN not registered for this client"
    # token endpoint by mTLS: the token is bound to the certificate (cnf x5t#S256)
    code = login(http, psc)["code"]
    resp = mtls.post(psc.endpoint("token"), data={"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": APP_REDIRECT, "client_id": "app"})
    assert resp.status_code == 200
    der = pki.org_auth_cli().cert.public_bytes(Encoding.DER)
    assert psc.verify(resp.json()["access_token"])["cnf"] == {"x5t#S256": ClientCert.from_der(der).x5t_s256}


def test_bad_client_authentication_is_401(psc, http) -> None:
    token = psc.issue_token(client_id="app").access_token
    wrong = http.post(psc.endpoint("introspect"), data={"token": token}, auth=("app", "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"] == 'Basic realm="esante-wallet"'
    unknown = http.post(psc.endpoint("introspect"), data={"token": token}, auth=("nobody", "x"))
    assert unknown.status_code == 401
    none = http.post(psc.endpoint("introspect"), data={"token": token})
    assert none.status_code == 401 and "www-authenticate" not in none.headers
    mismatch = http.post(psc.endpoint("introspect"), data={"token": token, "client_id": "drimcheck"},
                         auth=("app", secret(psc)))
    assert mismatch.status_code == 401
    assert http.post(psc.endpoint("introspect"), auth=("app", secret(psc))).json()["error"] == "invalid_request"
    token_ep = http.post(psc.endpoint("token"), data={"grant_type": "authorization_code", "code": "x",
                                                      "client_id": "app", "client_secret": "wrong"})
    assert token_ep.status_code == 401


# ----------------------------------------------------------------------------------------- faults and records


def test_unavailable_psc_answers_503_then_recovers(psc, http) -> None:
    psc.set_unavailable()
    for url in (psc.discovery_url, psc.endpoint("certs")):
        assert http.get(url).status_code == 503
    assert http.post(psc.endpoint("introspect"), data={"token": "x"}, auth=("app", secret(psc))).status_code == 503
    assert psc.requests[-1]["fault"] == "introspect"
    psc.set_unavailable(False)
    assert http.get(psc.discovery_url).status_code == 200
    psc.set_unavailable(endpoints=["introspect"])
    assert http.get(psc.discovery_url).status_code == 200
    assert http.post(psc.endpoint("introspect"), data={"token": "x"}, auth=("app", secret(psc))).status_code == 503
    with pytest.raises(ValueError):
        psc.set_fault("nowhere", 500)


def test_records_are_evidence_friendly_without_secrets(psc, http, mtls) -> None:
    psc.clear_requests()
    tokens = code_flow(http, psc, secret(psc))
    introspect(http, psc, tokens["access_token"])
    mtls.post(psc.endpoint("introspect"), data={"token": tokens["access_token"], "client_id": "app"})
    dump = json.dumps(psc.requests)
    for value in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"], secret(psc)):
        assert value not in dump
    auth, token_req, intro_basic, intro_mtls = psc.requests
    assert auth["endpoint"] == "auth" and "code=[REDACTED]" in dict(auth["response"]["headers"])["location"]
    assert auth["tls"]["sni"] == psc.wallet_fqdn and auth["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert dict(token_req["request"]["headers"])["authorization"] == "Basic [REDACTED]"
    assert token_req["facts"]["issued"][0]["fingerprint"] == jose.fingerprint(tokens["access_token"])
    assert intro_basic["facts"]["presented"]["claims"]["jti"] == psc.verify(tokens["access_token"])["jti"]
    assert intro_mtls["tls"]["client_cert"]["subject"] == psc.pki.org_auth_cli().subject_dn
    assert all(e["seq"] > 0 and e["time"] and e["elapsed_s"] >= 0 for e in psc.requests)


def test_wait_for_is_bounded(psc, http) -> None:
    after = psc.recorder.last_seq
    t0 = time.monotonic()
    assert psc.wait_for(lambda e: e["endpoint"] == "logout", timeout_s=0.2, after=after) is None
    assert 0.2 <= time.monotonic() - t0 < 0.2 + 5  # bounded (not hanging); the slack absorbs a loaded host
    http.get(psc.endpoint("certs"))
    assert psc.wait_for(lambda e: e["endpoint"] == "certs", timeout_s=2, after=after)["response"]["status"] == 200


# ----------------------------------------------------------------------------------------- campaign wiring


def test_start_for_campaign_registers_the_dut_client(pki) -> None:
    runtime = stub_runtime(pki)
    sim = psc_module.start_for_campaign(runtime)
    try:
        settings = sim.dut_settings()
        assert settings["client_id"] == "drimbox-dut" and settings["client_secret"]
        assert settings["issuer"] == sim.issuer and settings["ca_file"] == str(pki.market_trust_pem)
        assert sim.hosts() == {"auth.psc.drimcheck.test": str(runtime.simulator_address("psc")),
                               "wallet.psc.drimcheck.test": str(runtime.simulator_address("psc"))}
        assert settings["authorization_endpoint"].startswith("https://wallet.psc.drimcheck.test:")
        assert settings["revocation_endpoint"] == sim.issuer + "/protocol/openid-connect/revoke"
        dut = sim.client("drimbox-dut")
        assert dut.redirect_allowed("https://vi1.349.mesimagesmedicales.fr/api/auth/redirect")
        assert dut.redirect_allowed("http://127.0.0.1:18080/api/conso/auth/redirect")
        assert not dut.redirect_allowed("https://vi9.999.mesimagesmedicales.fr/x")
        assert pki.org_auth_cli().subject_dn in dut.tls_subject_dns
        with client(sim.hosts(), [sim.trust_pem]) as h:
            assert h.get(settings["discovery_url"]).json()["issuer"] == settings["issuer"]
    finally:
        sim.stop()


# ----------------------------------------------------------------------------------------- issue 15: as the real PSC


def test_discovery_is_modelled_on_the_published_psc_metadata(psc, http) -> None:
    """Real PSC: issuer on auth.*, authorization endpoint on wallet.*/auth; query, fragment and form_post;
    the claims and scopes of the published sandbox document; Keycloak's RFC 7009 endpoint."""
    doc = http.get(psc.discovery_url).json()
    assert doc["authorization_endpoint"] == f"https://wallet.psc.drimcheck.test:{psc.port}/auth"
    assert doc["issuer"].startswith(f"https://auth.psc.drimcheck.test:{psc.port}/")
    assert doc["response_modes_supported"] == ["query", "fragment", "form_post"]
    assert doc["claims_supported"] == ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name",
                                       "preferred_username", "email", "acr"]
    assert {"openid", "scope_all"} <= set(doc["scopes_supported"]) and doc["acr_values_supported"] == ["eidas1"]
    assert doc["revocation_endpoint"] == psc.issuer + "/protocol/openid-connect/revoke"
    assert "tls_client_auth" in doc["revocation_endpoint_auth_methods_supported"]
    assert doc["code_challenge_methods_supported"] == ["plain", "S256"]


def test_authorization_endpoint_is_served_on_its_own_host_only(psc, http) -> None:
    """A client that builds issuer-relative URLs instead of reading the discovery document gets a 404, as live."""
    psc.clear_requests()
    params = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid scope_all",
              "state": "s", "nonce": "n"}
    issuer_relative = http.get(psc.issuer + "/protocol/openid-connect/auth", params=params)
    assert issuer_relative.status_code == 404
    wallet = psc.wallet_base_url
    assert http.get(psc.base_url + "/auth", params=params).status_code == 404  # /auth on the issuer's host
    assert http.post(wallet + "/auth/realms/esante-wallet/protocol/openid-connect/token",
                     data={"grant_type": "authorization_code"}).status_code == 404  # token endpoint on the wallet host
    first = psc.requests[0]
    assert first["endpoint"] == "misdirected" and first["facts"]["outcome"] == "authorization_endpoint_elsewhere"
    assert first["facts"]["authorization_endpoint"] == psc.endpoint("auth")
    assert [r["endpoint"] for r in psc.requests] == ["misdirected"] * 3
    assert psc.requests_for("auth") == [] and psc.tokens() is not None
    assert login(http, psc)["code"]  # the discovery's URL works


def test_revocation_endpoint_rfc7009(psc, http, mtls) -> None:
    url = psc.endpoint("revoke")
    # an access token: that one only
    tokens = code_flow(http, psc, secret(psc))
    resp = http.post(url, auth=("app", secret(psc)), data={"token": tokens["access_token"],
                                                            "token_type_hint": "access_token"})
    assert resp.status_code == 200 and resp.content == b""
    assert introspect(http, psc, tokens["access_token"]) == {"active": False}
    assert http.get(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}
                    ).status_code == 401
    assert introspect(http, psc, tokens["refresh_token"])["active"] is True
    # a refresh token: every token of that grant (RFC 7009 §2.1), refresh refused afterwards
    resp = http.post(url, data={"token": tokens["refresh_token"], "client_id": "app", "client_secret": secret(psc)})
    assert resp.status_code == 200
    assert introspect(http, psc, tokens["refresh_token"]) == {"active": False}
    again = http.post(psc.endpoint("token"), auth=("app", secret(psc)),
                      data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # unknown, garbage or already revoked tokens: 200 (RFC 7009 §2.2)
    for token in ("not-a-token", tokens["access_token"], psc.issue_token(client_id="app").id_token):
        assert http.post(url, auth=("app", secret(psc)), data={"token": token}).status_code == 200
    # client authentication as at the token endpoint, mTLS included (RFC 8705)
    fresh = code_flow(http, psc, secret(psc))
    assert http.post(url, data={"token": fresh["access_token"]}).status_code == 401
    bad = http.post(url, auth=("app", "wrong"), data={"token": fresh["access_token"]})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    other = psc.issue_token(client_id="drimcheck")
    theirs = http.post(url, auth=("app", secret(psc)), data={"token": other.access_token})
    assert theirs.status_code == 401 and theirs.json()["error"] == "unauthorized_client"
    assert psc.introspect(other.access_token)["active"] is True
    missing = http.post(url, auth=("app", secret(psc)), data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    hint = http.post(url, auth=("app", secret(psc)), data={"token": fresh["access_token"], "token_type_hint": "x"})
    assert hint.status_code == 400 and hint.json()["error"] == "unsupported_token_type"
    assert mtls.post(url, data={"token": fresh["access_token"], "client_id": "app"}).status_code == 200
    assert introspect(http, psc, fresh["access_token"]) == {"active": False}
    entry = psc.requests_for("revoke")[-1]
    assert entry["facts"]["client_auth"]["method"] == "tls_client_auth" and entry["facts"]["revoked"] == 1
    assert fresh["access_token"] not in json.dumps(psc.requests_for("revoke"))


def _session_cookie(resp) -> str:
    cookie = resp.headers["set-cookie"]
    assert "Domain=psc.drimcheck.test" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    return cookie.split(";")[0]


def test_logout_keycloak_variants(psc, http) -> None:
    url, back = psc.endpoint("logout"), "https://vi1.349.mesimagesmedicales.fr/api/logged-out"
    # client_id + post_logout_redirect_uri, no id_token_hint: the browser's SSO session ends
    params = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid scope_all",
              "state": "s", "nonce": "n"}
    auth = http.get(psc.endpoint("auth"), params=params)
    cookie = _session_cookie(auth)
    code = parse_qs(urlsplit(auth.headers["location"]).query)["code"][0]
    tokens = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT}).json()
    resp = http.get(url, params={"client_id": "app", "post_logout_redirect_uri": back, "state": "bye"},
                    headers={"Cookie": cookie})
    assert resp.status_code == 302 and resp.headers["location"] == back + "?state=bye"
    assert introspect(http, psc, tokens["access_token"]) == {"active": False}
    assert psc.requests_for("logout")[-1]["facts"]["confirmed"] == "user"
    # the checks Keycloak makes: each a 400 page, never a redirect
    hint = code_flow(http, psc, secret(psc))["id_token"]
    refused = {
        "missing_id_token_hint": {"post_logout_redirect_uri": back},
        "client_id_mismatch": {"id_token_hint": hint, "client_id": "drimcheck", "post_logout_redirect_uri": back},
        "invalid_client_id": {"client_id": "nobody", "post_logout_redirect_uri": back},
        "invalid_post_logout_redirect_uri": {"client_id": "app", "post_logout_redirect_uri": "https://evil.example/"},
        "invalid_id_token_hint": {"id_token_hint": psc.issue_token(client_id="app").access_token},
    }
    for outcome, query in refused.items():
        resp = http.get(url, params=query)
        assert resp.status_code == 400 and "location" not in resp.headers, outcome
        assert psc.requests_for("logout")[-1]["facts"]["outcome"] == outcome
    assert psc.introspect(psc.token_info(hint).token)["active"] is True  # nothing ended by a refused request
    # id_token_hint + client_id that match, expired ID token accepted (Keycloak), POST form as well as GET
    psc.clock_offset_s = 3600.0
    resp = http.post(url, data={"id_token_hint": hint, "client_id": "app", "post_logout_redirect_uri": back})
    assert resp.status_code == 302 and resp.headers["location"] == back
    psc.clock_offset_s = 0.0
    assert psc.token_info(hint).state(psc.now()) == "revoked"
    # client_id alone, no cookie: nothing to end, a "logged out" page
    assert http.get(url, params={"client_id": "app"}).status_code == 200


def test_response_mode_form_post_and_fragment(psc, http) -> None:
    psc.clear_requests()
    params = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid scope_all",
              "state": "st-1", "nonce": "n-1", "response_mode": "form_post"}
    resp = http.get(psc.endpoint("auth"), params=params)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "no-store" in resp.headers["cache-control"]
    from lxml import html as lxml_html

    page = lxml_html.fromstring(resp.text)
    form = page.forms[0]
    assert form.method.upper() == "POST" and form.action == APP_REDIRECT
    assert "submit()" in page.body.get("onload")
    fields = dict(form.fields)
    assert fields["state"] == "st-1" and fields["iss"] == psc.issuer and fields["session_state"]
    token = http.post(psc.endpoint("token"), auth=("app", secret(psc)), data={
        "grant_type": "authorization_code", "code": fields["code"], "redirect_uri": APP_REDIRECT})
    assert token.status_code == 200 and psc.verify(token.json()["id_token"])["nonce"] == "n-1"
    recorded = psc.requests_for("auth")[-1]
    assert recorded["facts"]["response_mode"] == "form_post" and fields["code"] not in json.dumps(recorded)
    # errors come back the same way
    err = http.get(psc.endpoint("auth"), params={**params, "scope": "scope_all"})
    assert dict(lxml_html.fromstring(err.text).forms[0].fields)["error"] == "invalid_scope"
    # fragment
    frag = http.get(psc.endpoint("auth"), params={**params, "response_mode": "fragment"})
    assert frag.status_code == 302
    location = frag.headers["location"]
    assert location.startswith(APP_REDIRECT + "#") and "code=" in urlsplit(location).fragment
    # an unknown mode: an error page, no redirect (Keycloak)
    bad = http.get(psc.endpoint("auth"), params={**params, "response_mode": "web_message"})
    assert bad.status_code == 400 and "location" not in bad.headers


def test_reference_psc_client_reads_the_discovery_document(psc, http) -> None:
    """The reference DRIMbox's client takes every endpoint from the discovery (never issuer-relative URLs):
    configured with the issuer, discovery URL and credentials only, it logs in through wallet.*/auth."""
    from types import SimpleNamespace

    from simulators.drimbox.psc_client import PscClient, PscError

    settings = psc.dut_settings("app")
    minimal = {k: settings[k] for k in ("issuer", "discovery_url", "client_id", "client_secret", "ca_file")}
    rp = PscClient(SimpleNamespace(peers={"psc": minimal}, certs={}, hosts=psc.hosts()))
    try:
        request = rp.authorization(APP_REDIRECT)
        assert request.url.startswith(psc.endpoint("auth") + "?")
        back = http.get(request.url)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        login_ = rp.complete(code, APP_REDIRECT, request.nonce)
        assert login_.practitioner == DEFAULT_PRACTITIONER.idnat
        assert rp.introspect(login_.access_token)["active"] is True
    finally:
        rp.close()
    # a discovery document of another issuer is refused (OpenID Connect Discovery §4.3)
    rp = PscClient(SimpleNamespace(peers={"psc": {**minimal, "issuer": psc.issuer + "-autre"}}, certs={},
                                   hosts=psc.hosts()))
    try:
        with pytest.raises(PscError, match="autre émetteur"):
            rp.authorization(APP_REDIRECT)
    finally:
        rp.close()


def test_practitioner_browser_submits_the_form_post_page_to_the_client(psc) -> None:
    """A DUT that asks for response_mode=form_post gets its code: drimcheck's browser does what a browser with
    JavaScript does with PSC's page (POST the form to redirect_uri), instead of stopping on it."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from drimcheck import config as sut_config
    from drimcheck.browser import Browser

    received: list[dict] = []

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            received.append({"path": self.path, "type": self.headers.get("content-type"),
                             "form": {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}})
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        redirect = f"http://127.0.0.1:{server.server_port}/api/auth/redirect"
        psc.register_client("bed-app", redirect_uris=[f"http://127.0.0.1:{server.server_port}/*"])
        params = {"client_id": "bed-app", "redirect_uri": redirect, "response_type": "code", "scope": "openid scope_all",
                  "state": "st-b", "nonce": "n-b", "response_mode": "form_post"}
        from urllib.parse import urlencode

        with Browser(sut_config.load(None), psc.hosts(), None, bed=[f"127.0.0.1:{server.server_port}"]) as browser:
            nav = browser.open(psc.endpoint("auth") + "?" + urlencode(params), label="connexion")
        assert nav.error is None and [h.method for h in nav.hops] == ["GET", "POST"]
        assert nav.hops[-1].status == 200 and len(received) == 1
        got = received[0]
        assert got["path"] == "/api/auth/redirect" and got["type"] == "application/x-www-form-urlencoded"
        assert got["form"]["state"] == "st-b" and got["form"]["iss"] == psc.issuer and got["form"]["code"]
    finally:
        server.shutdown()
        server.server_close()


def test_psc03_names_an_authorization_request_sent_to_the_issuer_host(psc, http) -> None:
    """PSC-03 over what the simulator records: a DUT that builds the authorization URL from the issuer is told
    where the real endpoint is (the discovery document), not only that no login request arrived."""
    from drimcheck.checks import conso as checks

    mark = psc.recorder.last_seq
    http.get(psc.issuer + "/protocol/openid-connect/auth", params={"client_id": "app", "redirect_uri": APP_REDIRECT,
                                                                   "response_type": "code", "scope": "openid"})
    recorded = [r for r in psc.requests if r["seq"] > mark and (r.get("endpoint") == "auth" or (
        r.get("facts") or {}).get("outcome") == "authorization_endpoint_elsewhere")]
    [finding] = checks.login_requested(recorded, "app")
    assert finding.verdict.name == "FAIL" and psc.endpoint("auth") in finding.message
    assert "document de découverte" in finding.message
    mark = psc.recorder.last_seq
    login(http, psc)
    [finding] = checks.login_requested([r for r in psc.requests if r["seq"] > mark], "app")
    assert finding.verdict.name == "PASS"
