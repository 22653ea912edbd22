"""Fidelity: a real OIDC relying-party library (authlib) against the Pro Santé Connect simulator.

Nothing here is written against the simulator's internals: authlib reads the discovery document, builds the
authorization request (state, nonce, PKCE S256), parses the redirect, redeems the code, validates the ID token
against the published JWKS, reads the UserInfo, introspects (RFC 7662) with mutual TLS client authentication
(RFC 8705, registered as a client auth method the way an application does), revokes (RFC 7009), and the
RP-initiated logout and form_post answers are read as a browser would. A simulator that drifts from what such a
library expects fails here, before a vendor's DRIMbox (built on one) fails against it.
"""

from __future__ import annotations

import secrets
import warnings
from urllib.parse import parse_qs, urlsplit

import pytest

authlib = pytest.importorskip("authlib", reason="authlib (extra « test » de pyproject.toml) absent")

from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.httpx_client import OAuth2Client  # noqa: E402
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402
from lxml import html as lxml_html  # noqa: E402

from fixtures.pki import TestPKI, trust_context  # noqa: E402
from simulators.httpsim import MappedTransport  # noqa: E402
from simulators.psc import DEFAULT_PRACTITIONER, PscSimulator  # noqa: E402

REDIRECT = "https://vi1.349.mesimagesmedicales.fr/api/auth/redirect"
LOGGED_OUT = "https://vi1.349.mesimagesmedicales.fr/api/logged-out"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("fidelity-psc") / "pki")


@pytest.fixture(scope="module")
def psc(pki):
    sim = PscSimulator(pki)
    sim.register_client("rp", redirect_uris=["https://vi1.349.mesimagesmedicales.fr/api/*"],
                        tls_subject_dns=[pki.org_auth_cli().subject_dn])
    with sim:
        yield sim


def rp_client(psc, **kw) -> OAuth2Client:
    """authlib's httpx OAuth2 client, reaching the simulator's names through its hosts map (no DNS in the bed)."""
    ctx = kw.pop("verify", None) or trust_context([psc.trust_pem])
    return OAuth2Client(client_id="rp", client_secret=psc.client("rp").secret, scope="openid scope_all",
                        redirect_uri=REDIRECT, code_challenge_method="S256",
                        transport=MappedTransport(psc.hosts(), verify=ctx), trust_env=False, timeout=10.0, **kw)


@pytest.fixture
def rp(psc):
    with rp_client(psc) as client:
        yield client


@pytest.fixture(scope="module")
def metadata(psc) -> dict:
    with rp_client(psc) as client:
        doc = client.request("GET", psc.discovery_url, withhold_token=True).json()
    meta = OpenIDProviderMetadata(doc)
    meta.validate()  # OpenID Connect Discovery 1.0 §3 (+ RFC 8414 fields) as authlib checks them
    return dict(meta)


def test_discovery_is_accepted_by_authlib(psc, metadata) -> None:
    assert metadata["issuer"] == psc.issuer
    assert urlsplit(metadata["authorization_endpoint"]).hostname == "wallet.psc.drimcheck.test"
    assert "form_post" in metadata["response_modes_supported"]
    assert "S256" in metadata["code_challenge_methods_supported"]


def authorize(rp: OAuth2Client, metadata: dict, **extra: str) -> tuple[str, str, str, object]:
    """authlib builds the authorization request; the (automatic) login answers. Returns state, nonce, verifier
    and the HTTP answer."""
    nonce, verifier = generate_token(24), generate_token(48)
    url, state = rp.create_authorization_url(metadata["authorization_endpoint"], nonce=nonce, code_verifier=verifier,
                                             acr_values="eidas1", **extra)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge"] == [create_s256_code_challenge(verifier)] and query["state"] == [state]
    return state, nonce, verifier, rp.request("GET", url, withhold_token=True)


def validate_id_token(rp: OAuth2Client, metadata: dict, token: dict, nonce: str) -> dict:
    """authlib's OIDC Core §3.1.3.7 ID token validation with the keys of the published JWKS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # authlib.jose -> joserfc migration notice
        from authlib.jose import JsonWebKey, JsonWebToken
        from authlib.oidc.core import CodeIDToken

        jwks = JsonWebKey.import_key_set(rp.request("GET", metadata["jwks_uri"], withhold_token=True).json())
        claims = JsonWebToken(["RS256"]).decode(
            token["id_token"], key=jwks, claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
            claims_params={"nonce": nonce, "client_id": "rp", "access_token": token["access_token"]})
        claims.validate(leeway=5)
    return dict(claims)


def code_flow(rp: OAuth2Client, metadata: dict) -> tuple[dict, str]:
    state, nonce, verifier, resp = authorize(rp, metadata)
    assert resp.status_code == 302
    token = rp.fetch_token(metadata["token_endpoint"], authorization_response=resp.headers["location"], state=state,
                           code_verifier=verifier)
    return dict(token), nonce


def test_code_flow_with_state_nonce_pkce_and_id_token_validation(psc, rp, metadata) -> None:
    token, nonce = code_flow(rp, metadata)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"] and token["id_token"]
    claims = validate_id_token(rp, metadata, token, nonce)
    assert claims["sub"] == DEFAULT_PRACTITIONER.sub and claims["acr"] == "eidas1" and claims["nonce"] == nonce
    entry = psc.requests_for("token")[-1]
    assert entry["facts"]["client_auth"]["method"] == "client_secret_basic" and entry["facts"]["outcome"] == "ok"
    # authlib refuses an answer whose state is not the one it sent (CSRF, RFC 6749 §10.12)
    state, _, verifier, resp = authorize(rp, metadata)
    from authlib.oauth2.rfc6749.errors import MismatchingStateException

    with pytest.raises(MismatchingStateException):
        rp.fetch_token(metadata["token_endpoint"], authorization_response=resp.headers["location"],
                       state="another-state", code_verifier=verifier)


def test_userinfo_through_authlib(psc, rp, metadata) -> None:
    token, _ = code_flow(rp, metadata)
    from authlib.oidc.core import UserInfo

    info = UserInfo(rp.get(metadata["userinfo_endpoint"]).json())  # the bearer token is added by authlib
    assert info["sub"] == DEFAULT_PRACTITIONER.sub and info["SubjectNameID"] == DEFAULT_PRACTITIONER.idnat
    assert info["preferred_username"] == DEFAULT_PRACTITIONER.idnat and info["family_name"]


def test_introspection_with_mtls_client_authentication(psc, pki, rp, metadata) -> None:
    token, _ = code_flow(rp, metadata)
    ctx = pki.org_auth_cli().client_context([psc.trust_pem])
    # RFC 8705 tls_client_auth: the TLS client certificate authenticates, the body carries client_id ("none"
    # adds exactly that in authlib)
    with rp_client(psc, verify=ctx, token_endpoint_auth_method="none", revocation_endpoint_auth_method="none") as mtls:
        mtls.client_secret = None
        answer = mtls.introspect_token(metadata["introspection_endpoint"], token=token["access_token"],
                                       token_type_hint="access_token")
        assert answer.status_code == 200 and answer.json()["active"] is True
        assert answer.json()["client_id"] == "rp" and answer.json()["sub"] == DEFAULT_PRACTITIONER.sub
        entry = psc.requests_for("introspect")[-1]
        assert entry["facts"]["client_auth"]["method"] == "tls_client_auth" and entry["facts"]["client_auth"]["ok"]
        # the same client without its certificate is refused
    with rp_client(psc, token_endpoint_auth_method="none", revocation_endpoint_auth_method="none") as bare:
        bare.client_secret = None
        refused = bare.introspect_token(metadata["introspection_endpoint"], token=token["access_token"])
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_revocation_through_authlib(psc, rp, metadata) -> None:
    token, _ = code_flow(rp, metadata)
    resp = rp.revoke_token(metadata["revocation_endpoint"], token=token["refresh_token"],
                           token_type_hint="refresh_token")
    assert resp.status_code == 200
    answer = rp.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
    assert answer == {"active": False}  # revoking the refresh token revoked its grant (RFC 7009 §2.1)
    assert rp.revoke_token(metadata["revocation_endpoint"], token="jamais-emis").status_code == 200


def test_rp_initiated_logout(psc, rp, metadata) -> None:
    token, _ = code_flow(rp, metadata)
    state = secrets.token_urlsafe(8)
    resp = rp.request("GET", metadata["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": LOGGED_OUT, "state": state},
                  withhold_token=True)
    assert resp.status_code == 302 and resp.headers["location"] == f"{LOGGED_OUT}?state={state}"
    assert rp.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()["active"] is False
    # Keycloak's other variant: client_id + post_logout_redirect_uri
    resp = rp.request("GET", metadata["end_session_endpoint"], params={"client_id": "rp", "post_logout_redirect_uri": LOGGED_OUT},
                  withhold_token=True)
    assert resp.status_code == 302 and resp.headers["location"] == LOGGED_OUT


def test_form_post_response_mode(psc, rp, metadata) -> None:
    state, nonce, verifier, resp = authorize(rp, metadata, response_mode="form_post")
    assert resp.status_code == 200
    form = lxml_html.fromstring(resp.text).forms[0]
    assert form.method.upper() == "POST" and form.action == REDIRECT
    fields = dict(form.fields)
    assert fields["state"] == state
    # what the RP's callback receives as a POST body is the same parameters authlib parses from a query
    token = rp.fetch_token(metadata["token_endpoint"], authorization_response=f"{REDIRECT}?{_urlencode(fields)}",
                           state=state, code_verifier=verifier)
    assert validate_id_token(rp, metadata, dict(token), nonce)["nonce"] == nonce


def _urlencode(fields: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(fields)
