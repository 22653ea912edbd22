"""Pro Santé Connect simulator: a Keycloak-like OpenID Connect provider, realm ``esante-wallet``.

Paths are those of the real PSC (drimbox-spec §6.1; PSC's published sandbox metadata, docs/psc-proxy-peers.md).
The authorization endpoint has its own host, as the real one (``wallet.esw.esante.gouv.fr/auth`` next to the
issuer ``auth.esw.esante.gouv.fr``): here ``wallet.psc.drimcheck.test`` on the same socket and certificate::

    https://<wallet fqdn>/auth                                           authorization endpoint (automatic login)
    /auth/realms/esante-wallet/.well-known/openid-configuration      discovery (also .../wallet-openid-configuration)
    /auth/realms/esante-wallet/protocol/openid-connect/token         authorization_code, refresh_token, token exchange
    /auth/realms/esante-wallet/protocol/openid-connect/userinfo      PSC-shaped UserInfo (GET or POST)
    /auth/realms/esante-wallet/protocol/openid-connect/token/introspect   RFC 7662
    /auth/realms/esante-wallet/protocol/openid-connect/revoke        RFC 7009 (Keycloak)
    /auth/realms/esante-wallet/protocol/openid-connect/certs         JWKS
    /auth/realms/esante-wallet/protocol/openid-connect/logout        RP-initiated logout (Keycloak rules)


Any other path, or an endpoint asked on the other host (e.g. an authorization URL built from the issuer), is a
404 recorded as endpoint ``misdirected``.

Behaviour (what a DUT can rely on, and what the harness can check):

* **Authorization** (GET or POST): ``client_id`` must be registered and ``redirect_uri`` allowed for it,
  otherwise 400 and no redirect (OAuth 2.0 §4.1.2.1). Then errors are redirected to ``redirect_uri``
  (``error=unsupported_response_type`` unless ``response_type=code``, ``invalid_scope`` without
  ``openid``, ``invalid_request`` without ``nonce`` or with a bad PKCE method, ``access_denied`` after
  :meth:`PscSimulator.refuse_next_login`). Success: the test practitioner is logged in at once and the
  answer is ``302 <redirect_uri>?state=..&session_state=<sid>&iss=<issuer>&code=..`` (Keycloak order).
  ``response_mode``: ``query`` (default), ``fragment``, or ``form_post`` (a 200 HTML page whose form POSTs the
  same parameters to ``redirect_uri`` on load); another value is a 400 page. The SSO cookie
  ``KEYCLOAK_SESSION`` is set on both hosts' parent domain. PKCE (``plain``/``S256``) is optional and
  enforced at the token endpoint when used.
* **Client authentication** (token, introspection, back-channel logout): HTTP Basic
  (``client_secret_basic``), ``client_secret`` in the form (``client_secret_post``), or mutual TLS
  (RFC 8705 ``tls_client_auth``: the verified client certificate's subject DN must be one registered
  for the ``client_id`` given in the form). Failure: 401 ``invalid_client`` (+ ``WWW-Authenticate``
  when Basic was tried).
* **Tokens** are RS256 JWTs signed with a key generated per simulator (per run), published in the
  JWKS. Access token claims (spec §6.3): ``exp iat auth_time jti iss aud sub typ=Bearer azp nonce
  session_state acr=eidas1 scope sid preferred_username email_verified`` (+ ``cnf.x5t#S256`` when the
  client authenticated by mTLS, RFC 8705 bound tokens). ID token ``typ=ID`` with ``at_hash``;
  refresh token ``typ=Refresh``.
* **Token exchange** (RFC 8693): ``subject_token`` must be an active access token of this PSC
  (``subject_token_type`` access_token or jwt), optional ``audience``/``resource``/``scope`` (subset of
  the subject's) and ``actor_token`` (+ ``actor_token_type``, gives an ``act`` claim); errors are 400
  ``invalid_request`` / ``invalid_scope`` per RFC 8693 §2.2.2.
* **Revocation** (RFC 7009, Keycloak): see :meth:`PscSimulator._h_revoke`; revoked tokens are inactive at
  introspection and userinfo. **Logout**: Keycloak's variants (``id_token_hint``, or ``client_id`` +
  ``post_logout_redirect_uri``) and checks, see :meth:`PscSimulator._h_logout`.
* **Introspection**: ``{"active": false}`` for unknown, expired, revoked or logged-out tokens; for an
  active one, its claims + ``active``, ``client_id``, ``username``, ``token_type`` and, for access
  tokens only, ``SubjectNameID`` (spec §6.2).
* Every request is recorded (:attr:`PscSimulator.requests`): evidence-friendly dicts, credentials
  redacted, tokens reduced to facts (fingerprint + identifying claims; see ``simulators.httpsim``).


Scenario controls: :meth:`~PscSimulator.issue_token`, :meth:`~PscSimulator.revoke`,
:meth:`~PscSimulator.expire`, :meth:`~PscSimulator.logout_session`, :meth:`~PscSimulator.set_unavailable`,
:meth:`~PscSimulator.set_fault`, :meth:`~PscSimulator.login_as`, :meth:`~PscSimulator.refuse_next_login`.

In a campaign (:func:`start_for_campaign`) the PSC listens at ``runtime.simulator_address("psc")`` as
``https://auth.psc.drimcheck.test[:port]`` and ``https://wallet.psc.drimcheck.test[:port]`` (both in
:meth:`~PscSimulator.hosts`) with a market-CA certificate of the run PKI (the real PSC
uses a public CA certificate), accepts optional client certificates chaining to IGC-Santé, and
registers two clients: the DUT's (``dut_settings()``) and ``drimcheck`` (used by ``issue_token``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from drimcheck.jose import public_jwk
from simulators.httpsim import Recorder, SimServer
from simulators.psc.controls import ScenarioControlsMixin
from simulators.psc.discovery import DiscoveryMixin
from simulators.psc.front import HttpFrontMixin
from simulators.psc.login import LoginEndpointsMixin
from simulators.psc.model import (  # the public names of the package, as when it was one module
    ACR,
    CLAIMS_SUPPORTED,
    DEFAULT_FQDN,
    DEFAULT_PRACTITIONER,
    DEFAULT_SCOPE,
    ENDPOINTS,
    GRANT_TOKEN_EXCHANGE,
    OIDC_PATH,
    REALM,
    REALM_PATH,
    RESPONSE_MODES,
    SCOPES_SUPPORTED,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_ID,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_REFRESH,
    WALLET_AUTH_PATH,
    WALLET_FQDN,
    Activity,
    Exercice,
    OidcClient,
    Practitioner,
    Session,
    TokenRecord,
    TokenSet,
    _AuthCode,
    _Fault,
)
from simulators.psc.store import TokenStoreMixin
from simulators.psc.token_endpoints import TokenEndpointsMixin
from simulators.psc.web import _server_certificate

__all__ = [
    "REALM", "REALM_PATH", "OIDC_PATH", "DEFAULT_FQDN", "WALLET_FQDN", "WALLET_AUTH_PATH", "RESPONSE_MODES",
    "CLAIMS_SUPPORTED", "SCOPES_SUPPORTED", "DEFAULT_SCOPE", "ACR", "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS", "TOKEN_TYPE_JWT", "TOKEN_TYPE_REFRESH", "TOKEN_TYPE_ID", "ENDPOINTS",
    "Activity", "Exercice", "Practitioner", "DEFAULT_PRACTITIONER", "OidcClient", "TokenRecord", "Session",
    "TokenSet", "PscSimulator", "start_for_campaign",
]


class PscSimulator(DiscoveryMixin, ScenarioControlsMixin, TokenStoreMixin, HttpFrontMixin, LoginEndpointsMixin,
                   TokenEndpointsMixin):
    """A Pro Santé Connect OIDC provider on a real HTTPS socket (see the module docstring).

    Parameters: ``pki`` (fixtures.pki.TestPKI of the run), ``fqdn`` (its public name), ``host``/``port``
    (where it listens; port 0 = free port), ``public_port`` (port written in its URLs: "auto" = the
    bound port, None = none i.e. 443), ``server_cert`` (default: a market-CA certificate for ``fqdn``),
    ``client_cas`` (PEM files trusted for client certificates; default: IGC-Santé chain),
    ``practitioner`` (who logs in), token lifetimes in seconds, ``require_nonce``.

    Its parts, one module each: :mod:`~simulators.psc.discovery` (URLs, metadata, JWKS),
    :mod:`~simulators.psc.controls` (scenario controls), :mod:`~simulators.psc.store` (sessions and tokens),
    :mod:`~simulators.psc.front` (routing, faults, records, client authentication), :mod:`~simulators.psc.login`
    (authorization, logout) and :mod:`~simulators.psc.token_endpoints` (token, introspection, revocation, userinfo).
    """

    def __init__(self, pki: Any, *, fqdn: str = DEFAULT_FQDN, host: str = "127.0.0.1", port: int = 0,
                 public_port: int | str | None = "auto", server_cert: Any = None,
                 client_cas: list[Path] | None = None, practitioner: Practitioner = DEFAULT_PRACTITIONER,
                 access_lifetime_s: int = 300, refresh_lifetime_s: int = 1800, code_lifetime_s: int = 60,
                 require_nonce: bool = True, bind_tokens_to_cert: bool = True,
                 wallet_fqdn: str | None = WALLET_FQDN) -> None:
        self.pki = pki
        self.fqdn = fqdn
        #: host of the authorization endpoint (None: Keycloak's own path on the issuer's host)
        self.wallet_fqdn = wallet_fqdn.lower() if wallet_fqdn and wallet_fqdn.lower() != fqdn.lower() else None
        self.practitioner = practitioner
        self.access_lifetime_s = access_lifetime_s
        self.refresh_lifetime_s = refresh_lifetime_s
        self.code_lifetime_s = code_lifetime_s
        self.require_nonce = require_nonce
        self.bind_tokens_to_cert = bind_tokens_to_cert
        self.clock_offset_s = 0.0  # scenario time travel: added to the wall clock for every decision
        #: PEM file a client must trust to verify this server's certificate
        self.trust_pem: Path = pki.market_trust_pem if server_cert is None else Path(server_cert.chain_path)
        if server_cert is None:
            server_cert = _server_certificate(pki, fqdn, self.wallet_fqdn) if self.wallet_fqdn else pki.market_ov(fqdn)
        self.server_cert = server_cert
        self._client_cas = client_cas if client_cas is not None else [pki.igc_chain_pem]
        self._public_port = public_port
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = public_jwk(self._key)
        self.kid: str = self.jwk["kid"]
        self._lock = threading.RLock()
        self._clients: dict[str, OidcClient] = {}
        self._sessions: dict[str, Session] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._tokens: dict[str, TokenRecord] = {}  # by jti
        self._by_fingerprint: dict[str, str] = {}  # fingerprint -> jti
        self._faults: dict[str, _Fault] = {}
        self._next_login: Practitioner | None = None
        self._refuse_login: str | None = None
        self._forge_nonce = False  # the next session's tokens carry another nonce than the request's
        self.dut_client_id: str | None = None  # set by start_for_campaign
        self.recorder = Recorder("psc")
        self.events = Recorder("psc-scenario")  # scenario actions (revoke, expire, faults...), for the timeline
        ctx = self.server_cert.server_context(client_cas=self._client_cas)
        self._server = SimServer(self._app(), host=host, port=port, ssl_context=ctx, name="psc",
                                 on_rejected=self._on_rejected)
        self.register_client("drimcheck")

    def requests_for(self, endpoint: str) -> list[dict[str, Any]]:
        """Recorded requests of one endpoint (see ENDPOINTS)."""
        return self.recorder.snapshot(lambda e: e.get("endpoint") == endpoint)


# --------------------------------------------------------------------------- campaign


def start_for_campaign(runtime: Any) -> PscSimulator:
    """Start the PSC simulator of a campaign and register the DUT's client.

    The DUT's client id/secret come from ``[dut] psc_client_id`` / ``psc_client_secret`` when declared
    (an external DUT already configured), else ``drimbox-dut`` with a random secret. Its allowed
    redirect URIs: ``https://<every FQDN of the SUT>/*``, the Conso entry point ``http://<[dut] conso>/*``
    when declared, and ``[dut] psc_redirect_uri`` if given. Its mTLS identities (RFC 8705): the run's
    ORG AUTH_CLI and the SERV_SSL of every dbN (the Proxy e-santé adds its own when it starts).
    """
    addr = runtime.simulator_address("psc")
    sut = runtime.sut
    psc = PscSimulator(runtime.pki, host=addr.host, port=addr.port)
    client_id = str(sut.dut_value("psc_client_id", "drimbox-dut"))
    secret = sut.dut_value("psc_client_secret")
    redirects = [f"https://{fqdn}/*" for fqdn in sut.network]
    conso = runtime.dut_addresses().get("conso")
    if conso is not None:
        redirects.append(f"http://{conso}/*")
    extra = sut.dut_value("psc_redirect_uri")
    if extra:
        redirects.append(str(extra))
    dns = [runtime.pki.org_auth_cli().subject_dn] + [runtime.pki.serv_ssl(p.db).subject_dn for p in sut.pacs]
    psc.register_client(client_id, secret=str(secret) if secret else "random", redirect_uris=redirects,
                        tls_subject_dns=dns)
    psc.dut_client_id = client_id
    psc.start()
    return psc
