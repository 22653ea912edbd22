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

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from drimcheck.jose import JoseError, at_hash, decode_unverified, fingerprint, public_jwk, sign_rs256, verify_rs256
from simulators.httpsim import (
    ClientCert, HttpsSimulator, Recorder, SimServer, bearer_token, body_view, client_certificate, public_url,
    redact_url, request_headers_view, response_headers_view, tls_summary, token_facts,
)

__all__ = [
    "REALM", "REALM_PATH", "OIDC_PATH", "DEFAULT_FQDN", "WALLET_FQDN", "WALLET_AUTH_PATH", "RESPONSE_MODES",
    "CLAIMS_SUPPORTED", "SCOPES_SUPPORTED", "DEFAULT_SCOPE", "ACR", "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS", "TOKEN_TYPE_JWT", "TOKEN_TYPE_REFRESH", "TOKEN_TYPE_ID", "ENDPOINTS",
    "Activity", "Exercice", "Practitioner", "DEFAULT_PRACTITIONER", "OidcClient", "TokenRecord", "Session",
    "TokenSet", "PscSimulator", "start_for_campaign",
]

REALM = "esante-wallet"
REALM_PATH = f"/auth/realms/{REALM}"
OIDC_PATH = f"{REALM_PATH}/protocol/openid-connect"
DEFAULT_FQDN = "auth.psc.drimcheck.test"
#: The authorization endpoint's own host, as the real PSC's ``https://wallet.esw.esante.gouv.fr/auth`` next to the
#: issuer ``https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet`` (published sandbox metadata, see
#: docs/psc-proxy-peers.md). Same listening socket, same certificate (both names in its SAN).
WALLET_FQDN = "wallet.psc.drimcheck.test"
WALLET_AUTH_PATH = "/auth"
#: OAuth 2.0 Multiple Response Type Encoding Practices (query, fragment) and Form Post Response Mode, as listed by
#: the real discovery document.
RESPONSE_MODES = ("query", "fragment", "form_post")
#: ``claims_supported`` and ``scopes_supported`` of the published PSC sandbox metadata, verbatim.
CLAIMS_SUPPORTED = ("aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username",
                    "email", "acr")
SCOPES_SUPPORTED = ("openid", "address", "email", "identity", "microprofile-jwt", "offline_access", "phone",
                    "profile", "roles", "scope_1", "scope_2", "scope_all", "web-origins", "eidas2")
SESSION_COOKIE = "KEYCLOAK_SESSION"  # Keycloak's SSO session cookie: <realm>/<user id>/<session id>
DEFAULT_SCOPE = "openid scope_all"
ACR = "eidas1"
GRANT_CODE = "authorization_code"
GRANT_REFRESH = "refresh_token"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
TOKEN_TYPE_ID = "urn:ietf:params:oauth:token-type:id_token"

#: Endpoint names used in records, faults and set_unavailable(endpoints=...).
ENDPOINTS = ("discovery", "realm", "auth", "token", "token-exchange", "userinfo", "introspect", "revoke", "certs",
             "logout")

_SUB_NAMESPACE = uuid.UUID("550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd")  # shape of PSC's federated "f:<uuid>:<id>" subs


# --------------------------------------------------------------------------- the practitioner


@dataclass(frozen=True)
class Activity:
    """One activity (exercise site) of a practitioner, as in PSC's ``SubjectRefPro.exercices[].activities[]``."""

    raison_sociale: str  # raisonSocialeSite
    ancien_identifiant: str  # ancienIdentifiantDeLaStructure (what the PoC matches the Situation parameter with)
    identifiant_technique: str = ""  # identifiantTechniqueDeLaStructure
    code_secteur: str = "SA07"  # codeSecteurDactivite (TRE_R02 SecteurActivite)
    code_mode_exercice: str = "L"
    numero_finess_site: str = ""
    numero_finess_ej: str = ""
    code_postal: str = "75009"
    bureau_cedex: str = "75009 PARIS"
    libelle_voie: str = "PASTEUR"

    def to_psc(self) -> dict[str, str]:
        return {
            "codeModeExercice": self.code_mode_exercice, "codeSecteurDactivite": self.code_secteur,
            "codeSectionPharmacien": "", "codeRole": "", "codeGenreActivite": "GENR01", "numeroSiretSite": "",
            "numeroSirenSite": "", "numeroFinessSite": self.numero_finess_site,
            "numeroFinessetablissementJuridique": self.numero_finess_ej,
            "identifiantTechniqueDeLaStructure": self.identifiant_technique, "raisonSocialeSite": self.raison_sociale,
            "enseigneCommercialeSite": "", "complementDestinataire": "", "complementPointGeographique": "",
            "numeroVoie": "1", "indiceRepetitionVoie": "", "codeTypeDeVoie": "R", "libelleVoie": self.libelle_voie,
            "mentionDistribution": "", "bureauCedex": self.bureau_cedex, "codePostal": self.code_postal,
            "codeCommune": "", "codePays": "99000", "telephone": "", "telephone2": "", "telecopie": "",
            "adresseEMail": "", "codeDepartement": "", "ancienIdentifiantDeLaStructure": self.ancien_identifiant,
            "autoriteDenregistrement": "CNOM/CNOM/CNOM",
        }


@dataclass(frozen=True)
class Exercice:
    """One professional exercise (``SubjectRefPro.exercices[]``); codes from TRE_G15 / TRE_R38 [I for SM44]."""

    nom: str  # nomDexercice
    prenom: str  # prenomDexercice
    activities: tuple[Activity, ...]
    code_profession: str = "10"  # médecin (TRE_G15 ProfessionSante)
    code_categorie: str = "C"  # civil
    code_civilite: str = "DR"
    code_type_savoir_faire: str = "S"  # spécialité ordinale
    code_savoir_faire: str = "SM44"  # radio-diagnostic et imagerie médicale [I]

    def to_psc(self) -> dict[str, Any]:
        return {
            "codeProfession": self.code_profession, "codeCategorieProfessionnelle": self.code_categorie,
            "codeCiviliteDexercice": self.code_civilite, "nomDexercice": self.nom, "prenomDexercice": self.prenom,
            "codeTypeSavoirFaire": self.code_type_savoir_faire, "codeSavoirFaire": self.code_savoir_faire,
            "activities": [a.to_psc() for a in self.activities],
        }


@dataclass(frozen=True)
class Practitioner:
    """A test health professional PSC logs in automatically.

    ``idnat`` is the national identifier (``SubjectNameID``, ``preferred_username``): ``8`` + RPPS for
    an RPPS practitioner, as on ANS test cards.
    """

    idnat: str
    family_name: str
    given_name: str
    exercices: tuple[Exercice, ...]
    civilite: str = "M"

    @property
    def sub(self) -> str:
        """PSC/Keycloak federated subject ``f:<uuid>:<idnat>``."""
        return f"f:{_SUB_NAMESPACE}:{self.idnat}"

    @property
    def rpps(self) -> str:
        return self.idnat[1:] if self.idnat.startswith("8") else self.idnat

    def userinfo(self) -> dict[str, Any]:
        """The UserInfo document, shaped as PSC's (fields read by the ANS PoC and by VIHF builders)."""
        first = self.exercices[0] if self.exercices else None
        activity = first.activities[0] if first and first.activities else None
        return {
            "Secteur_Activite": f"{activity.code_secteur}^1.2.250.1.71.4.2.4" if activity else "",
            "sub": self.sub,
            "codeGenreActivite": "GENR01",
            "SubjectOrganization": activity.raison_sociale if activity else "",
            "Mode_Acces_Raison": "",
            "preferred_username": self.idnat,
            "codeCivilite": self.civilite,
            "given_name": self.given_name,
            "Acces_Regulation_Medicale": "FAUX",
            "UITVersion": "1.0",
            "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
            "SubjectRefPro": {"codeCivilite": self.civilite, "exercices": [e.to_psc() for e in self.exercices]},
            "SubjectOrganizationID": activity.identifiant_technique if activity else "",
            "SubjectRole": [f"{e.code_profession}^1.2.250.1.213.1.1.5.5" for e in self.exercices],
            "PSI_Locale": "1.2.250.1.213.1.3.1.1",
            "otherIds": [{"identifiant": self.rpps, "origine": "RPPS", "qualite": 1}],
            "SubjectNameID": self.idnat,
            "family_name": self.family_name,
        }


DEFAULT_PRACTITIONER = Practitioner(
    idnat="899700990349", family_name="RADIOLOGUE0990349", given_name="CLAIRE", civilite="MME",
    exercices=(Exercice(
        nom="RADIOLOGUE0990349", prenom="CLAIRE", code_civilite="DR",
        activities=(
            # the structure of the DUT's certificates (fixtures.pki DEFAULT_STRUCTURE_ID / DEFAULT_ORGANISATION)
            Activity(raison_sociale="DRIMCHECK CENTRE IMAGERIE TEST", ancien_identifiant="300000009990349",
                     identifiant_technique="R10000009990349", code_secteur="SA07"),
            Activity(raison_sociale="HOPITAL DRIMCHECK TEST", ancien_identifiant="1750099903",
                     identifiant_technique="F750099903", code_secteur="SA01", code_mode_exercice="S",
                     numero_finess_site="750099903", numero_finess_ej="750099900",
                     code_postal="75013", bureau_cedex="75013 PARIS", libelle_voie="DE L'HOPITAL"),
        ),
    ),),
)


# --------------------------------------------------------------------------- registry records


@dataclass
class OidcClient:
    """A registered OAuth client. ``redirect_uris`` entries are exact URIs, or prefixes ending with ``*``."""

    client_id: str
    secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    tls_subject_dns: list[str] = field(default_factory=list)  # RFC 8705 tls_client_auth_subject_dn values

    def redirect_allowed(self, uri: str) -> bool:
        for pattern in self.redirect_uris:
            if pattern.endswith("*") and uri.startswith(pattern[:-1]):
                return True
            if uri == pattern:
                return True
        return False


@dataclass
class Session:
    """A login session (Keycloak SSO session): its ``sid`` is the tokens' ``sid``/``session_state``."""

    sid: str
    practitioner: Practitioner
    client_id: str
    auth_time: int
    nonce: str | None
    scope: str
    ended_at: float | None = None


@dataclass
class TokenRecord:
    """A token this PSC issued. ``token`` is the raw string (memory only: never recorded as evidence)."""

    jti: str
    kind: str  # "access" | "refresh" | "id"
    token: str
    client_id: str
    sid: str
    claims: dict[str, Any]
    grant: str  # how it was obtained: authorization_code, refresh_token, token-exchange, issue_token
    parent_jti: str | None = None  # refresh token used, or subject token exchanged
    revoked_at: float | None = None
    forced_expired: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)

    @property
    def expires_at(self) -> int:
        return int(self.claims.get("exp", 0))

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.forced_expired or now >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        out = {"jti": self.jti, "kind": self.kind, "fingerprint": self.fingerprint, "client_id": self.client_id,
               "sid": self.sid, "grant": self.grant, "parent_jti": self.parent_jti, "claims": dict(self.claims),
               "revoked_at": self.revoked_at, "forced_expired": self.forced_expired}
        if now is not None:
            out["state"] = self.state(now)
        return out


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returned (or :meth:`PscSimulator.issue_token` minted)."""

    access_token: str
    expires_in: int
    scope: str
    sid: str
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    id_token: str | None = None
    token_type: str = "Bearer"

    def as_response(self) -> dict[str, Any]:
        out: dict[str, Any] = {"access_token": self.access_token, "expires_in": self.expires_in}
        if self.refresh_token:
            out.update(refresh_expires_in=self.refresh_expires_in, refresh_token=self.refresh_token)
        out["token_type"] = self.token_type
        if self.id_token:
            out["id_token"] = self.id_token
        out.update({"not-before-policy": 0, "session_state": self.sid, "scope": self.scope})
        return out


@dataclass
class _AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    sid: str
    scope: str
    nonce: str | None
    challenge: str | None
    challenge_method: str | None
    issued_at: float
    used: bool = False
    issued_jtis: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str | None = None
    description: str | None = None


class OAuthError(Exception):
    """An OAuth/OIDC error answer: JSON ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, status: int, error: str, description: str = "", *, www_authenticate: str | None = None):
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.www_authenticate = www_authenticate


# --------------------------------------------------------------------------- the simulator


class PscSimulator(HttpsSimulator):
    """A Pro Santé Connect OIDC provider on a real HTTPS socket (see the module docstring).

    Parameters: ``pki`` (fixtures.pki.TestPKI of the run), ``fqdn`` (its public name), ``host``/``port``
    (where it listens; port 0 = free port), ``public_port`` (port written in its URLs: "auto" = the
    bound port, None = none i.e. 443), ``server_cert`` (default: a market-CA certificate for ``fqdn``),
    ``client_cas`` (PEM files trusted for client certificates; default: IGC-Santé chain),
    ``practitioner`` (who logs in), token lifetimes in seconds, ``require_nonce``.
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

    # ------------------------------------------------------------------ URLs (lifecycle, address, hosts(),
    # base_url, requests, clear_requests, wait_for: see HttpsSimulator)

    @property
    def issuer(self) -> str:
        return self.base_url + REALM_PATH

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def wallet_base_url(self) -> str:
        """``https://<wallet fqdn>[:port]`` (the issuer's base URL when there is no separate wallet host)."""
        if not self.wallet_fqdn:
            return self.base_url
        return public_url(self.wallet_fqdn, self.port if self._public_port == "auto" else self._public_port)  # type: ignore[arg-type]

    def hosts(self) -> dict[str, str]:
        """``{fqdn: "ip:port"}`` for the issuer's host and the authorization endpoint's host (one socket)."""
        out = {self.fqdn: self.address}
        if self.wallet_fqdn:
            out[self.wallet_fqdn] = self.address
        return out

    def endpoint(self, name: str) -> str:
        """Absolute URL of an endpoint: auth, token, userinfo, introspect, revoke, certs, logout."""
        if name == "auth" and self.wallet_fqdn:
            return self.wallet_base_url + WALLET_AUTH_PATH
        paths = {"auth": "/auth", "token": "/token", "userinfo": "/userinfo", "introspect": "/token/introspect",
                 "revoke": "/revoke", "certs": "/certs", "logout": "/logout"}
        return self.base_url + OIDC_PATH + paths[name]

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    # ------------------------------------------------------------------ configuration

    def register_client(self, client_id: str, *, secret: str | None = "random", redirect_uris: Iterable[str] = (),
                        tls_subject_dns: Iterable[str] = ()) -> OidcClient:
        """Register (or replace) a confidential client; ``secret="random"`` draws one, None = mTLS only."""
        if secret == "random":
            secret = secrets.token_urlsafe(24)
        client = OidcClient(client_id, secret, list(redirect_uris), list(tls_subject_dns))
        with self._lock:
            self._clients[client_id] = client
        return client

    def client(self, client_id: str) -> OidcClient:
        with self._lock:
            return self._clients[client_id]

    def login_as(self, practitioner: Practitioner | None) -> None:
        """Automatic logins (and issue_token) use this practitioner from now on (None: back to the default one)."""
        with self._lock:
            self._next_login = practitioner

    def refuse_next_login(self, error: str = "access_denied") -> None:
        """The next authorization request ends with ``error`` redirected to the client (e.g. the user cancels)."""
        with self._lock:
            self._refuse_login = error
        self.events.add({"action": "refuse_next_login", "error": error})

    def forge_next_nonce(self) -> None:
        """The next login's ID token (and tokens) carry a nonce other than the one of the authorization request,
        as with a code obtained for another login and injected into the client's redirect (OIDC Core §15.5.2)."""
        with self._lock:
            self._forge_nonce = True
        self.events.add({"action": "forge_next_nonce"})

    def set_unavailable(self, unavailable: bool = True, *, status: int = 503,
                        endpoints: Iterable[str] | None = None) -> None:
        """Every endpoint (or those named) answers ``status`` without doing anything; False restores them."""
        names = list(endpoints) if endpoints is not None else [e for e in ENDPOINTS if e != "token-exchange"]
        for name in names:
            if unavailable:
                self.set_fault(name, status)
            else:
                self.clear_faults(name)

    def set_fault(self, endpoint: str, status: int, error: str | None = None, description: str | None = None) -> None:
        """Answer ``status`` (with an OAuth error JSON when ``error`` is given) on an endpoint.

        ``token-exchange`` targets only token requests with the RFC 8693 grant type.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown PSC endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        with self._lock:
            self._faults[endpoint] = _Fault(status, error, description)
        self.events.add({"action": "set_fault", "endpoint": endpoint, "status": status, "error": error})

    def clear_faults(self, *endpoints: str) -> None:
        """Remove the faults of the given endpoints (all when none given)."""
        with self._lock:
            for name in endpoints or list(self._faults):
                self._faults.pop(name, None)
        self.events.add({"action": "clear_faults", "endpoints": list(endpoints) or "all"})

    # ------------------------------------------------------------------ scenario API on tokens

    def issue_token(self, *, client_id: str = "drimcheck", practitioner: Practitioner | None = None,
                    scope: str = DEFAULT_SCOPE, lifetime_s: int | None = None, nonce: str | None = None,
                    audience: str | list[str] | None = None) -> TokenSet:
        """Log a practitioner in and mint access, refresh and ID tokens without any HTTP flow.

        What drimcheck presents when it plays a Conso against a DUT Source. ``lifetime_s`` (access token)
        may be zero or negative to mint a token whose signed ``exp`` is already past.
        """
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown PSC client {client_id!r}")
            session = self._new_session(practitioner or self._next_login or self.practitioner, client_id,
                                        nonce or secrets.token_urlsafe(12), scope)
            tokens = self._issue_set(session, client_id, scope, grant="issue_token", lifetime_s=lifetime_s,
                                     audience=audience)
        self.events.add({"action": "issue_token", "client_id": client_id, "sid": session.sid,
                         "token": token_facts(tokens.access_token)})
        return tokens

    def token_info(self, token: str) -> TokenRecord | None:
        """The record of a token given as raw string, jti or fingerprint; None if this PSC never issued it."""
        with self._lock:
            return self._find(token)

    def tokens(self, *, sid: str | None = None) -> list[TokenRecord]:
        """Every token issued (of one session when ``sid`` is given), oldest first."""
        with self._lock:
            return [t for t in self._tokens.values() if sid is None or t.sid == sid]

    def revoke(self, what: str) -> int:
        """Revoke a token (raw string, jti or fingerprint) or every token of a session (``sid``); returns the count."""
        with self._lock:
            now = self.now()
            targets = self._targets(what)
            for t in targets:
                if t.revoked_at is None:
                    t.revoked_at = now
        self.events.add({"action": "revoke", "target": _describe_target(what), "count": len(targets)})
        return len(targets)

    def expire(self, what: str) -> int:
        """Make a token (or every token of a session) expired for this PSC (introspection inactive, refresh
        refused). Its signed ``exp`` is unchanged: to test a DUT's own ``exp`` check, mint a token with
        ``issue_token(lifetime_s=0)`` or move :attr:`clock_offset_s`."""
        with self._lock:
            targets = self._targets(what)
            for t in targets:
                t.forced_expired = True
        self.events.add({"action": "expire", "target": _describe_target(what), "count": len(targets)})
        return len(targets)

    def logout_session(self, sid: str) -> int:
        """End a session as the logout endpoint does (its tokens become inactive); returns tokens revoked."""
        with self._lock:
            count = self._end_session(sid)
        self.events.add({"action": "logout_session", "sid": sid, "count": count})
        return count

    def introspect(self, token: str) -> dict[str, Any]:
        """What the introspection endpoint answers for this token (no client authentication, no record)."""
        with self._lock:
            return self._introspection(token)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token signed by this PSC's key (signature only); JoseError otherwise."""
        return verify_rs256(token, self._key.public_key())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self.jwk)]}

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata, modelled on PSC's published sandbox document (docs/psc-proxy-peers.md).

        Same shape and values where this simulator does what the real one does: the authorization endpoint on
        its own host, ``response_modes_supported``, ``claims_supported``, ``scopes_supported``,
        ``code_challenge_methods_supported``, ``tls_client_certificate_bound_access_tokens``. Capabilities the
        simulator does not implement are not advertised (implicit/hybrid response types, password and
        client_credentials grants, ``private_key_jwt``/``client_secret_jwt``, request objects, the session
        iframe, dynamic registration). Added, as Keycloak serves them: ``revocation_endpoint`` (RFC 7009),
        the RFC 8693 grant and ``acr_values_supported`` (``eidas1``, the value PSC's clients send).
        """
        ep = {n: self.endpoint(n) for n in ("auth", "token", "userinfo", "introspect", "revoke", "certs", "logout")}
        auth_methods = ["client_secret_basic", "client_secret_post", "tls_client_auth"]
        return {
            "issuer": self.issuer,
            "authorization_endpoint": ep["auth"],
            "token_endpoint": ep["token"],
            "introspection_endpoint": ep["introspect"],
            "userinfo_endpoint": ep["userinfo"],
            "end_session_endpoint": ep["logout"],
            "frontchannel_logout_session_supported": True,
            "frontchannel_logout_supported": True,
            "jwks_uri": ep["certs"],
            "grant_types_supported": [GRANT_CODE, GRANT_REFRESH, GRANT_TOKEN_EXCHANGE],
            "acr_values_supported": [ACR],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["none"],
            "response_modes_supported": list(RESPONSE_MODES),
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint": ep["revoke"],
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "claims_supported": list(CLAIMS_SUPPORTED),
            "claim_types_supported": ["normal"],
            "claims_parameter_supported": False,
            "scopes_supported": list(SCOPES_SUPPORTED),
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "code_challenge_methods_supported": ["plain", "S256"],
            "tls_client_certificate_bound_access_tokens": True,
            "mtls_endpoint_aliases": {"token_endpoint": ep["token"], "introspection_endpoint": ep["introspect"],
                                      "userinfo_endpoint": ep["userinfo"], "end_session_endpoint": ep["logout"],
                                      "revocation_endpoint": ep["revoke"]},
        }

    # ------------------------------------------------------------------ records

    def requests_for(self, endpoint: str) -> list[dict[str, Any]]:
        """Recorded requests of one endpoint (see ENDPOINTS)."""
        return self.recorder.snapshot(lambda e: e.get("endpoint") == endpoint)

    # ------------------------------------------------------------------ campaign

    def dut_settings(self, client_id: str | None = None) -> dict[str, Any]:
        """What a DUT is configured with: issuer, endpoints, its client credentials, trust and address."""
        client_id = client_id or self.dut_client_id
        client = self._clients.get(client_id) if client_id else None
        return {
            "fqdn": self.fqdn, "address": self.address, "issuer": self.issuer, "discovery_url": self.discovery_url,
            "authorization_endpoint": self.endpoint("auth"), "token_endpoint": self.endpoint("token"),
            "userinfo_endpoint": self.endpoint("userinfo"), "introspection_endpoint": self.endpoint("introspect"),
            "end_session_endpoint": self.endpoint("logout"), "jwks_uri": self.endpoint("certs"),
            "revocation_endpoint": self.endpoint("revoke"), "wallet_fqdn": self.wallet_fqdn,
            "scope": DEFAULT_SCOPE, "acr_values": ACR, "ca_file": str(self.trust_pem),
            "client_id": client.client_id if client else None, "client_secret": client.secret if client else None,
            "redirect_uris": list(client.redirect_uris) if client else [],
        }

    # ------------------------------------------------------------------ internals: state

    def _find(self, what: str) -> TokenRecord | None:
        if what in self._tokens:
            return self._tokens[what]
        jti = self._by_fingerprint.get(what) or self._by_fingerprint.get(fingerprint(what))
        return self._tokens.get(jti) if jti else None

    def _targets(self, what: str) -> list[TokenRecord]:
        """Every token of session ``what``, or the one token it designates (raw, jti or fingerprint)."""
        if what in self._sessions:
            return [t for t in self._tokens.values() if t.sid == what]
        rec = self._find(what)
        return [rec] if rec else []

    def _new_session(self, practitioner: Practitioner, client_id: str, nonce: str | None, scope: str) -> Session:
        session = Session(str(uuid.uuid4()), practitioner, client_id, int(self.now()), nonce, scope)
        self._sessions[session.sid] = session
        return session

    def _end_session(self, sid: str) -> int:
        session = self._sessions.get(sid)
        if session is None:
            return 0
        now = self.now()
        if session.ended_at is None:
            session.ended_at = now
        count = 0
        for t in self._tokens.values():
            if t.sid == sid and t.revoked_at is None:
                t.revoked_at = now
                count += 1
        return count

    def _store(self, kind: str, claims: dict[str, Any], client_id: str, sid: str, grant: str,
               parent_jti: str | None = None) -> TokenRecord:
        typ = {"access": "JWT", "refresh": "JWT", "id": "JWT"}[kind]
        token = sign_rs256(claims, self._key, kid=self.kid, typ=typ)
        rec = TokenRecord(claims["jti"], kind, token, client_id, sid, claims, grant, parent_jti)
        self._tokens[rec.jti] = rec
        self._by_fingerprint[rec.fingerprint] = rec.jti
        return rec

    def _access_claims(self, session: Session, client_id: str, scope: str, *, lifetime_s: int | None = None,
                       audience: str | list[str] | None = None, cert: ClientCert | None = None,
                       act: dict[str, Any] | None = None) -> dict[str, Any]:
        now = int(self.now())
        claims: dict[str, Any] = {
            "exp": now + (self.access_lifetime_s if lifetime_s is None else lifetime_s), "iat": now,
            "auth_time": session.auth_time, "jti": str(uuid.uuid4()), "iss": self.issuer,
            "aud": audience if audience else client_id, "sub": session.practitioner.sub, "typ": "Bearer",
            "azp": client_id,
        }
        if session.nonce:
            claims["nonce"] = session.nonce
        claims.update({"session_state": session.sid, "acr": ACR, "scope": scope, "sid": session.sid,
                       "email_verified": False, "preferred_username": session.practitioner.idnat})
        if cert is not None and self.bind_tokens_to_cert:
            claims["cnf"] = {"x5t#S256": cert.x5t_s256}
        if act:
            claims["act"] = act
        return claims

    def _issue_set(self, session: Session, client_id: str, scope: str, *, grant: str,
                   lifetime_s: int | None = None, audience: str | list[str] | None = None,
                   cert: ClientCert | None = None, parent_jti: str | None = None) -> TokenSet:
        access = self._store("access", self._access_claims(session, client_id, scope, lifetime_s=lifetime_s,
                                                           audience=audience, cert=cert),
                             client_id, session.sid, grant, parent_jti)
        now = int(self.now())
        refresh_claims: dict[str, Any] = {
            "exp": now + self.refresh_lifetime_s, "iat": now, "jti": str(uuid.uuid4()), "iss": self.issuer,
            "aud": self.issuer, "sub": session.practitioner.sub, "typ": "Refresh", "azp": client_id,
        }
        if session.nonce:
            refresh_claims["nonce"] = session.nonce
        refresh_claims.update({"session_state": session.sid, "scope": scope, "sid": session.sid})
        refresh = self._store("refresh", refresh_claims, client_id, session.sid, grant, parent_jti)
        id_token = None
        if "openid" in scope.split():
            p = session.practitioner
            id_claims: dict[str, Any] = {
                "exp": access.expires_at, "iat": now, "auth_time": session.auth_time, "jti": str(uuid.uuid4()),
                "iss": self.issuer, "aud": client_id, "sub": p.sub, "typ": "ID", "azp": client_id,
            }
            if session.nonce:
                id_claims["nonce"] = session.nonce
            id_claims.update({"session_state": session.sid, "at_hash": at_hash(access.token), "acr": ACR,
                              "sid": session.sid, "email_verified": False, "preferred_username": p.idnat,
                              "given_name": p.given_name, "family_name": p.family_name})
            id_token = self._store("id", id_claims, client_id, session.sid, grant, parent_jti).token
        return TokenSet(access_token=access.token, expires_in=access.expires_at - now, scope=scope, sid=session.sid,
                        refresh_token=refresh.token, refresh_expires_in=self.refresh_lifetime_s, id_token=id_token)

    def _introspection(self, token: str) -> dict[str, Any]:
        rec = self._find(token) if token else None
        if rec is None or rec.token != token or rec.state(self.now()) != "active":
            return {"active": False}
        session = self._sessions.get(rec.sid)
        out = dict(rec.claims)
        out.update(active=True, client_id=rec.client_id,
                   username=rec.claims.get("preferred_username"),
                   token_type={"access": "Bearer", "refresh": "Refresh", "id": "ID"}[rec.kind])
        if rec.kind == "access" and session is not None:
            out["SubjectNameID"] = session.practitioner.idnat
        return out

    # ------------------------------------------------------------------ internals: HTTP

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        def route(path: str, name: str, handler: Any, methods: list[str]) -> Route:
            async def endpoint(request: Any) -> Any:
                return await self._handle(request, name, handler)
            return Route(path, endpoint, methods=methods)

        auth_path = WALLET_AUTH_PATH if self.wallet_fqdn else OIDC_PATH + "/auth"
        return Starlette(routes=[
            route(REALM_PATH + "/.well-known/openid-configuration", "discovery", self._h_discovery, ["GET"]),
            route(REALM_PATH + "/.well-known/wallet-openid-configuration", "discovery", self._h_discovery, ["GET"]),
            route(REALM_PATH, "realm", self._h_realm, ["GET"]),
            route(auth_path, "auth", self._h_auth, ["GET", "POST"]),
            route(OIDC_PATH + "/token", "token", self._h_token, ["POST"]),
            route(OIDC_PATH + "/token/introspect", "introspect", self._h_introspect, ["POST"]),
            route(OIDC_PATH + "/revoke", "revoke", self._h_revoke, ["POST"]),
            route(OIDC_PATH + "/userinfo", "userinfo", self._h_userinfo, ["GET", "POST"]),
            route(OIDC_PATH + "/certs", "certs", self._h_certs, ["GET"]),
            route(OIDC_PATH + "/logout", "logout", self._h_logout, ["GET", "POST"]),
            # anything else (another path, or an endpoint asked on the other host): 404, recorded
            route("/{path:path}", "misdirected", self._h_misdirected,
                  ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        ])

    async def _handle(self, request: Any, name: str, handler: Any) -> Any:
        from starlette.responses import Response

        t0 = time.monotonic()
        body = await request.body()
        facts: dict[str, Any] = {}
        fault_name = None
        if self.wallet_fqdn and name != "misdirected":
            host = _host_only(request.headers.get("host"))
            # the authorization endpoint lives on the wallet host only, every other endpoint on the issuer's only
            if host in (self.fqdn.lower(), self.wallet_fqdn) and (name == "auth") != (host == self.wallet_fqdn):
                name, handler = "misdirected", self._h_misdirected
        with self._lock:
            fault = self._faults.get(name)
            if fault is None and name == "token" and "token-exchange" in self._faults:
                if _form_value(body, "grant_type") == GRANT_TOKEN_EXCHANGE:
                    fault, fault_name = self._faults["token-exchange"], "token-exchange"
        try:
            if fault is not None:
                fault_name = fault_name or name
                if fault.error:
                    raise OAuthError(fault.status, fault.error, fault.description or "fault injected by the scenario")
                response: Response = Response("Service Unavailable\n" if fault.status == 503 else "fault\n",
                                              status_code=fault.status, media_type="text/plain")
            else:
                with self._lock:
                    response = handler(request, body, facts)
        except OAuthError as exc:
            facts.setdefault("outcome", exc.error)
            response = _oauth_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must be visible in the record, not a hang
            facts["outcome"] = "server_error"
            facts["exception"] = f"{type(exc).__name__}: {exc}"
            response = _oauth_error_response(OAuthError(500, "server_error", "internal error of the PSC simulator"))
        self._record(request, name, body, response, facts, fault_name, time.monotonic() - t0)
        return response

    def _record(self, request: Any, name: str, body: bytes, response: Any, facts: dict[str, Any],
                fault: str | None, elapsed: float) -> None:
        query = request.url.query
        client = request.client
        resp_body = bytes(getattr(response, "body", b"") or b"")
        if name == "auth" and resp_body:  # form_post page: the authorization code is a credential
            resp_body = _FORM_POST_CODE.sub(rb"\1[REDACTED]", resp_body)
        self.recorder.add({
            "endpoint": name,
            "method": request.method,
            "path": request.url.path,
            "query": _redact_query(query) if query else "",
            "client": f"{client.host}:{client.port}" if client else None,
            "host_header": request.headers.get("host"),
            "tls": tls_summary(request),
            "request": {"headers": request_headers_view(request.headers.items()),
                        "body": body_view(body, request.headers.get("content-type", ""))},
            "response": {"status": response.status_code,
                         "headers": response_headers_view(response.headers.items()),
                         "body": body_view(resp_body, response.headers.get("content-type", ""))},
            "facts": facts,
            "fault": fault,
            "elapsed_s": round(elapsed, 6),
        })

    # -- client authentication

    def _authenticate(self, request: Any, form: dict[str, str], facts: dict[str, Any]) -> OidcClient:
        auth = request.headers.get("authorization", "")
        cert = client_certificate(request)
        method = None
        client_id = form.get("client_id")
        failure = "client authentication required"
        client = None
        if auth.lower().startswith("basic "):
            method = "client_secret_basic"
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                cid, _, secret = raw.partition(":")
                from urllib.parse import unquote_plus

                cid, secret = unquote_plus(cid), unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                cid, secret = "", ""
            candidate = self._clients.get(cid)
            if client_id and client_id != cid:
                failure = "client_id in the body differs from the Basic credentials"
            elif candidate and candidate.secret and hmac.compare_digest(candidate.secret, secret):
                client = candidate
            else:
                failure = "invalid client credentials"
            client_id = cid
        elif "client_secret" in form:
            method = "client_secret_post"
            candidate = self._clients.get(client_id or "")
            if candidate and candidate.secret and hmac.compare_digest(candidate.secret, form["client_secret"]):
                client = candidate
            else:
                failure = "invalid client credentials"
        elif cert is not None:
            method = "tls_client_auth"
            candidate = self._clients.get(client_id or "")
            if not client_id:
                failure = "client_id is required with tls_client_auth (RFC 8705)"
            elif candidate is None:
                failure = "unknown client_id"
            elif cert.subject not in candidate.tls_subject_dns:
                failure = "client certificate subject DN not registered for this client"
            elif not cert.client_auth_eku:
                failure = "client certificate not allowed for TLS client authentication"
            else:
                client = candidate
        facts["client_auth"] = {"method": method, "client_id": client_id, "ok": client is not None,
                                "cert_subject": cert.subject if cert else None}
        if client is None:
            facts["client_auth"]["failure"] = failure
            raise OAuthError(401, "invalid_client", failure,
                             www_authenticate=f'Basic realm="{REALM}"' if method == "client_secret_basic" else None)
        return client

    # -- endpoints (called under the lock)

    def _set_session_cookie(self, response: Any, session: Session) -> None:
        """Keycloak's SSO cookie, shared by the wallet and issuer hosts (their common parent domain)."""
        domain = _common_parent(self.fqdn, self.wallet_fqdn) if self.wallet_fqdn else None
        response.set_cookie(SESSION_COOKIE, f"{REALM}/{session.practitioner.sub}/{session.sid}", path="/",
                            domain=domain, secure=True, httponly=True, samesite="none")

    def _cookie_session(self, request: Any) -> Session | None:
        value = request.cookies.get(SESSION_COOKIE) or ""
        session = self._sessions.get(value.rpartition("/")[2]) if value.startswith(REALM + "/") else None
        return session if session is not None and session.ended_at is None else None

    def _h_discovery(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json(self.discovery())

    def _h_realm(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json({"realm": REALM, "token-service": self.base_url + OIDC_PATH,
                      "account-service": self.issuer + "/account", "tokens-not-before": 0})

    def _h_certs(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json(self.jwks())

    def _h_auth(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        from starlette.responses import HTMLResponse, RedirectResponse

        params = _single_params(request.url.query)
        if request.method == "POST":
            params.update(_parse_form(body))
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        state = params.get("state")
        facts.update({"client_id": client_id, "redirect_uri": redirect_uri,
                      "response_type": params.get("response_type"), "scope": params.get("scope"),
                      "nonce_present": bool(params.get("nonce")), "state_present": bool(state),
                      "acr_values": params.get("acr_values") or params.get("acr"),
                      "code_challenge_method": (params.get("code_challenge_method") or "plain")
                      if params.get("code_challenge") else None,
                      "login_hint": params.get("login_hint"), "response_mode": params.get("response_mode")})
        client = self._clients.get(client_id)
        if client is None:
            facts["outcome"] = "unknown_client"
            return HTMLResponse("<!doctype html><title>Erreur</title><p>Client inconnu.</p>", status_code=400)
        if not redirect_uri or not client.redirect_allowed(redirect_uri):
            facts["outcome"] = "invalid_redirect_uri"
            return HTMLResponse("<!doctype html><title>Erreur</title><p>Paramètre invalide : redirect_uri</p>",
                                status_code=400)

        mode = params.get("response_mode") or "query"
        if mode not in RESPONSE_MODES:  # Keycloak: error page, no redirect
            facts["outcome"] = "invalid_response_mode"
            return HTMLResponse("<!doctype html><title>Erreur</title><p>Paramètre invalide : response_mode</p>",
                                status_code=400)

        def back(query: list[tuple[str, str]], session: Session | None = None) -> Any:
            fields = ([("state", state)] if state is not None else []) + query
            if mode == "form_post":
                response: Any = HTMLResponse(_form_post_page(redirect_uri, fields),
                                             headers={"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})
            elif mode == "fragment":
                response = RedirectResponse(redirect_uri + "#" + urlencode(fields), status_code=302)
            else:
                sep = "&" if urlsplit(redirect_uri).query else "?"
                response = RedirectResponse(redirect_uri + sep + urlencode(fields), status_code=302)
            if session is not None:
                self._set_session_cookie(response, session)
            return response

        def error(code: str, description: str) -> Any:
            facts["outcome"] = code
            return back([("error", code), ("error_description", description), ("iss", self.issuer)])

        if params.get("response_type") != "code":
            return error("unsupported_response_type", "only response_type=code is supported")
        if "openid" not in (params.get("scope") or "").split():
            return error("invalid_scope", "the openid scope is required")
        if self.require_nonce and not params.get("nonce"):
            return error("invalid_request", "nonce is required")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge and (method or "plain") not in ("plain", "S256"):
            return error("invalid_request", "unsupported code_challenge_method")
        if self._refuse_login:
            code, self._refuse_login = self._refuse_login, None
            return error(code, "authentication refused")
        practitioner = self._next_login or self.practitioner
        nonce = params.get("nonce")
        if self._forge_nonce:
            self._forge_nonce = False
            nonce = f"drimcheck-autre-demande-{secrets.token_urlsafe(12)}"
            facts["nonce_forged"] = True
        session = self._new_session(practitioner, client_id, nonce, params["scope"])
        code = secrets.token_urlsafe(32)
        self._codes[code] = _AuthCode(code, client_id, redirect_uri, session.sid, params["scope"],
                                      params.get("nonce"), challenge, (method or "plain") if challenge else None,
                                      self.now())
        facts.update(outcome="ok", sid=session.sid, practitioner=practitioner.idnat)
        return back([("session_state", session.sid), ("iss", self.issuer), ("code", code)], session)

    def _h_token(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        form = _parse_form(body, repeatable=("audience", "resource"))
        grant = form.get("grant_type")
        facts["grant_type"] = grant
        client = self._authenticate(request, form, facts)
        cert = client_certificate(request) if facts["client_auth"]["method"] == "tls_client_auth" else None
        if grant == GRANT_CODE:
            tokens = self._grant_code(client, form, cert, facts)
        elif grant == GRANT_REFRESH:
            tokens = self._grant_refresh(client, form, cert, facts)
        elif grant == GRANT_TOKEN_EXCHANGE:
            return self._grant_exchange(client, form, cert, facts)
        elif not grant:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        else:
            raise OAuthError(400, "unsupported_grant_type", f"unsupported grant_type {grant}")
        facts.update(outcome="ok", sid=tokens.sid, issued=[token_facts(tokens.access_token)])
        return _json(tokens.as_response(), no_store=True)

    def _grant_code(self, client: OidcClient, form: dict[str, str], cert: ClientCert | None,
                    facts: dict[str, Any]) -> TokenSet:
        code = self._codes.get(form.get("code", ""))
        if code is None:
            raise OAuthError(400, "invalid_grant", "Code not valid")
        if code.used:
            for jti in code.issued_jtis:  # replayed code: revoke what it gave (OAuth 2.0 §4.1.2)
                if jti in self._tokens and self._tokens[jti].revoked_at is None:
                    self._tokens[jti].revoked_at = self.now()
            raise OAuthError(400, "invalid_grant", "Code already used")
        if self.now() - code.issued_at > self.code_lifetime_s:
            raise OAuthError(400, "invalid_grant", "Code expired")
        if code.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Code issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "invalid_grant", "Incorrect redirect_uri")
        if code.challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_grant", "PKCE verifier not specified")
            computed = verifier if code.challenge_method == "plain" else \
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
            if not hmac.compare_digest(computed, code.challenge):
                raise OAuthError(400, "invalid_grant", "PKCE verification failed")
        session = self._sessions[code.sid]
        if session.ended_at is not None:
            raise OAuthError(400, "invalid_grant", "Session not active")
        code.used = True
        tokens = self._issue_set(session, client.client_id, code.scope, grant=GRANT_CODE, cert=cert)
        code.issued_jtis = [t.jti for t in self._tokens.values() if t.sid == session.sid]
        return tokens

    def _grant_refresh(self, client: OidcClient, form: dict[str, str], cert: ClientCert | None,
                       facts: dict[str, Any]) -> TokenSet:
        raw = form.get("refresh_token", "")
        rec = self._find(raw) if raw else None
        facts["presented"] = token_facts(raw)
        if rec is None or rec.token != raw or rec.kind != "refresh":
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        if rec.state(self.now()) != "active":
            raise OAuthError(400, "invalid_grant", f"Refresh token {rec.state(self.now())}")
        if rec.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Refresh token issued to another client")
        session = self._sessions[rec.sid]
        if session.ended_at is not None:
            raise OAuthError(400, "invalid_grant", "Session not active")
        scope = rec.claims.get("scope", DEFAULT_SCOPE)
        if form.get("scope"):
            if not set(form["scope"].split()) <= set(scope.split()):
                raise OAuthError(400, "invalid_scope", "scope broader than the original grant")
            scope = form["scope"]
        return self._issue_set(session, client.client_id, scope, grant=GRANT_REFRESH, cert=cert, parent_jti=rec.jti)

    def _grant_exchange(self, client: OidcClient, form: dict[str, Any], cert: ClientCert | None,
                        facts: dict[str, Any]) -> Any:
        subject, subject_type = form.get("subject_token"), form.get("subject_token_type")
        facts["presented"] = token_facts(subject)
        if not subject or not subject_type:
            raise OAuthError(400, "invalid_request", "subject_token and subject_token_type are required")
        if subject_type not in (TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT):
            raise OAuthError(400, "invalid_request", f"unsupported subject_token_type {subject_type}")
        requested = form.get("requested_token_type") or TOKEN_TYPE_ACCESS
        if requested not in (TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT):
            raise OAuthError(400, "invalid_request", f"unsupported requested_token_type {requested}")
        rec = self._find(subject)
        if rec is None or rec.token != subject or rec.kind != "access" or rec.state(self.now()) != "active":
            raise OAuthError(400, "invalid_request", "subject_token is not an active access token of this issuer")
        act = None
        if form.get("actor_token"):
            if not form.get("actor_token_type"):
                raise OAuthError(400, "invalid_request", "actor_token_type is required with actor_token")
            try:
                _, actor_claims = decode_unverified(form["actor_token"])
            except JoseError as exc:
                raise OAuthError(400, "invalid_request", f"actor_token: {exc}") from None
            act = {"sub": actor_claims.get("sub") or actor_claims.get("client_id") or client.client_id}
            facts["actor"] = act
        audiences = list(form.get("audience") or []) + list(form.get("resource") or [])
        scope = rec.claims.get("scope", DEFAULT_SCOPE)
        if form.get("scope"):
            if not set(form["scope"].split()) <= set(scope.split()):
                raise OAuthError(400, "invalid_scope", "scope broader than the subject token's")
            scope = form["scope"]
        session = self._sessions[rec.sid]
        claims = self._access_claims(session, client.client_id, scope, cert=cert, act=act,
                                     audience=(audiences[0] if len(audiences) == 1 else audiences) or None)
        new = self._store("access", claims, client.client_id, session.sid, "token-exchange", rec.jti)
        facts.update(outcome="ok", sid=session.sid, audience=audiences, issued=[token_facts(new.token)])
        return _json({"access_token": new.token, "issued_token_type": requested, "token_type": "Bearer",
                      "expires_in": new.expires_at - int(self.now()), "scope": scope}, no_store=True)

    def _h_introspect(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        form = _parse_form(body)
        self._authenticate(request, form, facts)
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "token is required")
        facts["presented"] = token_facts(token)
        facts["token_type_hint"] = form.get("token_type_hint")
        result = self._introspection(token)
        rec = self._find(token)
        facts.update(outcome="ok", active=result["active"], state=rec.state(self.now()) if rec else "unknown")
        return _json(result, no_store=True)

    def _h_misdirected(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        """404 for a path this host does not serve. An authorization request sent to the issuer's host (a client
        that builds issuer-relative URLs instead of reading the discovery document) says where it belongs."""
        from starlette.responses import PlainTextResponse

        facts["outcome"] = "not_found"
        if request.url.path.rstrip("/").endswith(("/protocol/openid-connect/auth", WALLET_AUTH_PATH)) and \
                _host_only(request.headers.get("host")) != self.wallet_fqdn:
            facts["outcome"] = "authorization_endpoint_elsewhere"
            facts["authorization_endpoint"] = self.endpoint("auth")
        return PlainTextResponse("Not Found\n", status_code=404)

    def _h_revoke(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        """RFC 7009 token revocation, as Keycloak's ``TokenRevocationEndpoint``.

        Client authentication as at the token endpoint (401 ``invalid_client``). ``token`` required (400
        ``invalid_request``); a ``token_type_hint`` other than access_token/refresh_token: 400
        ``unsupported_token_type`` (Keycloak). An unknown, invalid, expired or already revoked token: 200 (RFC
        7009 §2.2). A token issued to another client: 401 ``unauthorized_client`` (Keycloak "Unmatching
        clients"). An access token: that token is revoked. A refresh token: the client's session is ended for
        this client, every token of it revoked (RFC 7009 §2.1 SHOULD, Keycloak's ``revokeClient``)."""
        from starlette.responses import Response

        form = _parse_form(body)
        client = self._authenticate(request, form, facts)
        token = form.get("token")
        hint = form.get("token_type_hint")
        facts["token_type_hint"] = hint
        if not token:
            raise OAuthError(400, "invalid_request", "Token not provided")
        facts["presented"] = token_facts(token)
        if hint is not None and hint not in ("access_token", "refresh_token"):
            raise OAuthError(400, "unsupported_token_type", f"Unsupported token type: {hint}")
        rec = self._find(token)
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if rec is None or rec.token != token or rec.kind == "id" or rec.state(self.now()) != "active":
            facts.update(outcome="ok_unknown_token", state=rec.state(self.now()) if rec else "unknown")
            return Response(status_code=200, headers=headers)
        if rec.client_id != client.client_id:
            raise OAuthError(401, "unauthorized_client", "Unmatching clients")
        now = self.now()
        if rec.kind == "refresh":
            revoked = 0
            for t in self._tokens.values():
                if t.sid == rec.sid and t.client_id == rec.client_id and t.revoked_at is None:
                    t.revoked_at = now
                    revoked += 1
        else:
            rec.revoked_at = now
            revoked = 1
        facts.update(outcome="ok", kind=rec.kind, sid=rec.sid, revoked=revoked)
        return Response(status_code=200, headers=headers)

    def _h_userinfo(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        from starlette.responses import JSONResponse

        token = bearer_token(request.headers.get("authorization"))
        if token is None and request.method == "POST":
            token = _parse_form(body).get("access_token")
        facts["presented"] = token_facts(token)
        if not token:
            facts["outcome"] = "no_token"
            return JSONResponse({"error": "invalid_request", "error_description": "missing access token"},
                                status_code=401, headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'})
        rec = self._find(token)
        state = rec.state(self.now()) if rec and rec.token == token else "unknown"
        if rec is None or rec.kind != "access" or state != "active":
            facts["outcome"] = f"invalid_token ({state})"
            return JSONResponse({"error": "invalid_token", "error_description": "Token verification failed"},
                                status_code=401, headers={"WWW-Authenticate": (
                                    f'Bearer realm="{REALM}", error="invalid_token", '
                                    'error_description="Token verification failed"')})
        if "openid" not in str(rec.claims.get("scope", "")).split():
            facts["outcome"] = "insufficient_scope"
            return JSONResponse({"error": "insufficient_scope"}, status_code=403)
        practitioner = self._sessions[rec.sid].practitioner
        facts.update(outcome="ok", practitioner=practitioner.idnat)
        return _json(practitioner.userinfo())

    def _h_logout(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        """Keycloak's logout endpoint (RP-initiated logout, OIDC RP-Initiated Logout 1.0), and its back-channel form.

        * POST with ``refresh_token`` + client authentication (Keycloak's back-channel logout): 204.
        * Front channel (GET or POST form), Keycloak >= 18 rules: ``id_token_hint`` must be an ID token signed by
          this realm (expired ones are accepted); ``client_id``, when given with it, must be the token's ``azp``;
          a ``client_id`` alone must be a registered client; ``post_logout_redirect_uri`` needs ``id_token_hint``
          or ``client_id`` ("Missing parameters: id_token_hint") and must be allowed for that client ("Invalid
          redirect uri"); each error is a 400 page, never a redirect. With ``id_token_hint`` the session it names
          ends at once; without it Keycloak asks the user to confirm, and the simulated practitioner confirms at
          once: the browser's SSO session (cookie) ends, if any. Then 302 to ``post_logout_redirect_uri`` (+
          ``state``), or a "logged out" page. The legacy ``redirect_uri`` (Keycloak < 18, still on PSC's
          ``/auth``-prefixed Keycloak) is accepted when allowed for a registered client.
        """
        from starlette.responses import HTMLResponse, RedirectResponse, Response

        def page(outcome: str, message: str, status: int = 400) -> Any:
            facts["outcome"] = outcome
            return HTMLResponse(f"<!doctype html><title>Erreur</title><p>{message}</p>", status_code=status)

        params = _single_params(request.url.query)
        form = _parse_form(body) if request.method == "POST" else {}
        if form.get("refresh_token"):
            client = self._authenticate(request, form, facts)
            rec = self._find(form["refresh_token"])
            facts["presented"] = token_facts(form["refresh_token"])
            if rec is None or rec.kind != "refresh" or rec.client_id != client.client_id or \
                    rec.state(self.now()) != "active":
                raise OAuthError(400, "invalid_grant", "Invalid refresh token")
            facts.update(outcome="ok", sid=rec.sid, revoked=self._end_session(rec.sid), mode="backchannel")
            return Response(status_code=204)
        params.update({k: v for k, v in form.items() if k != "client_secret"})
        hint, client_id = params.get("id_token_hint"), params.get("client_id")
        target = params.get("post_logout_redirect_uri")
        legacy = params.get("redirect_uri")
        facts.update(mode="frontchannel", id_token_hint=bool(hint), client_id=client_id,
                     post_logout_redirect_uri=target, legacy_redirect_uri=legacy)
        claims: dict[str, Any] = {}
        if hint:
            try:
                claims = self.verify(hint)
            except JoseError:
                return page("invalid_id_token_hint", "Paramètre invalide : id_token_hint")
            if claims.get("typ") != "ID" or claims.get("iss") != self.issuer:
                return page("invalid_id_token_hint", "Paramètre invalide : id_token_hint")
            if client_id and client_id != claims.get("azp"):
                return page("client_id_mismatch",
                            "Le paramètre client_id diffère du client pour lequel l'ID token a été émis")
        client = self._clients.get(client_id or str(claims.get("azp") or claims.get("aud") or ""))
        if client_id and client is None:
            return page("invalid_client_id", "Paramètre invalide : client_id")
        if target:
            if not hint and not client_id:
                return page("missing_id_token_hint", "Paramètre manquant : id_token_hint")
            if client is None or not client.redirect_allowed(target):
                return page("invalid_post_logout_redirect_uri", "URI de redirection invalide")
        elif legacy:
            if not any(c.redirect_allowed(legacy) for c in self._clients.values()):
                return page("invalid_redirect_uri", "URI de redirection invalide")
            target = legacy
        if hint:
            sid = str(claims.get("sid") or "")
            facts.update(sid=sid, confirmed="id_token_hint")
        else:  # Keycloak shows "Voulez-vous vous déconnecter ?"; the simulated practitioner says yes
            session = self._cookie_session(request)
            sid = session.sid if session else ""
            facts.update(sid=sid or None, confirmed="user")
        facts["revoked"] = self._end_session(sid) if sid else 0
        facts["outcome"] = "ok"
        if target:
            query = urlencode([("state", params["state"])]) if params.get("state") and not legacy else ""
            sep = "&" if urlsplit(target).query else "?"
            response: Any = RedirectResponse(target + (sep + query if query else ""), status_code=302)
        else:
            response = HTMLResponse("<!doctype html><title>Déconnexion</title><p>Vous êtes déconnecté.</p>")
        response.delete_cookie(SESSION_COOKIE, path="/", domain=_common_parent(self.fqdn, self.wallet_fqdn)
                               if self.wallet_fqdn else None)
        return response


# --------------------------------------------------------------------------- helpers


def _json(data: Any, *, status: int = 200, no_store: bool = False) -> Any:
    from starlette.responses import Response

    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"} if no_store else {}
    return Response(json.dumps(data, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers=headers)


def _oauth_error_response(exc: OAuthError) -> Any:
    resp = _json({"error": exc.error, "error_description": exc.description}, status=exc.status, no_store=True)
    if exc.www_authenticate:
        resp.headers["WWW-Authenticate"] = exc.www_authenticate
    return resp


def _parse_form(body: bytes, *, repeatable: tuple[str, ...] = ()) -> dict[str, Any]:
    """application/x-www-form-urlencoded body; a parameter sent twice is an error (RFC 6749 §3.1) unless repeatable."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "the body is not UTF-8") from None
    out: dict[str, Any] = {}
    for key, values in parsed.items():
        if key in repeatable:
            out[key] = values
        elif len(values) > 1:
            raise OAuthError(400, "invalid_request", f"parameter {key} included more than once")
        else:
            out[key] = values[0]
    return out


def _form_value(body: bytes, name: str) -> str | None:
    try:
        values = parse_qs(body.decode("utf-8", "replace")).get(name)
    except ValueError:
        return None
    return values[0] if values else None


_FORM_POST_CODE = re.compile(rb'(name="code" value=")[^"]*')


def _host_only(value: str | None) -> str:
    """The host of a ``Host`` header, lowercase, without its port."""
    host = (value or "").strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def _common_parent(a: str, b: str) -> str | None:
    """The longest parent domain shared by two host names (at least two labels), for a cookie's Domain."""
    la, lb = a.lower().split(".")[::-1], b.lower().split(".")[::-1]
    shared = []
    for x, y in zip(la, lb):
        if x != y:
            break
        shared.append(x)
    if len(shared) < 2 or len(shared) >= min(len(la), len(lb)):
        return None
    return ".".join(reversed(shared))


def _server_certificate(pki: Any, fqdn: str, wallet_fqdn: str) -> Any:
    """Market-CA server certificate naming both the issuer's host and the authorization endpoint's host."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"), x509.NameAttribute(NameOID.LOCALITY_NAME, "Paris"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DRIMCHECK PRO SANTE CONNECT TEST"),
        x509.NameAttribute(NameOID.COMMON_NAME, fqdn),
    ])
    return pki.issue(f"market_ov:{fqdn}+{wallet_fqdn}", subject=subject, profile="market_ov", issuer="market_ca",
                     san=[fqdn, wallet_fqdn])


def _form_post_page(action: str, fields: list[tuple[str, str]]) -> str:
    """OAuth 2.0 Form Post Response Mode: an HTML page that POSTs ``fields`` to ``action`` on load."""
    from html import escape

    inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}"/>' for k, v in fields)
    return ("<!doctype html><html><head><title>Submit This Form</title></head>"
            '<body onload="javascript:document.forms[0].submit()">'
            f'<form method="post" action="{escape(action)}">{inputs}'
            '<noscript><p>JavaScript est désactivé : cliquez sur le bouton pour continuer.</p>'
            '<input type="submit" value="Continuer"/></noscript></form></body></html>')


def _single_params(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _redact_query(query: str) -> str:
    return redact_url("?" + query)[1:]


def _describe_target(what: str) -> str:
    """A token in an event is shown by its fingerprint, never verbatim."""
    return fingerprint(what) if len(what) > 64 else what


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
