"""Pro Santé Connect client of the reference DRIMbox (Conso login, Source token introspection).

* Endpoints come from PSC's discovery document (``peers.psc.discovery_url``, else ``<issuer>/.well-known/
  openid-configuration``), read once (through the proxy when there is one) and checked: its ``issuer`` must be
  the configured one (OpenID Connect Discovery §4.3). Never issuer-relative URLs: the real PSC's authorization
  endpoint is on another host (``wallet.esw.esante.gouv.fr/auth``) than its issuer.
* Front channel (the practitioner's browser): the PSC authorization endpoint with ``response_type=code``,
  ``scope=openid scope_all``, ``acr_values=eidas1``, a random ``state`` (bound to the browser's session
  cookie, checked on return) and a random ``nonce`` (checked in the ID token).
* Back channel (token, userinfo, JWKS, introspection): through the Proxy e-santé when the DRIMbox has
  one (drimbox-spec §6.4, FAQ "thème 2889": mTLS between the proxy and PSC, RFC 8705): the DRIMbox
  opens mTLS to the proxy with its ORG AUTH_CLI and sends only its ``client_id``; the proxy
  authenticates to PSC with its own certificate. Without a proxy: straight to PSC with
  ``client_secret_basic``.
* The ID token is verified: RS256 signature with the realm's JWKS, ``iss``, ``aud``/``azp``, ``exp``,
  ``nonce``. The access token is kept opaque (the Source it is presented to introspects it).

The reference's own code: no harness import.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from simulators.drimbox import mutants, netutil


class PscError(RuntimeError):
    """The login or an introspection could not be completed (one French line)."""


@dataclass(frozen=True)
class LoginRequest:
    state: str
    nonce: str
    url: str


@dataclass
class Login:
    """A practitioner logged in through PSC: tokens and UserInfo."""

    access_token: str
    refresh_token: str | None
    id_token: str
    id_claims: dict[str, Any]
    userinfo: dict[str, Any]
    expires_at: float
    sid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def practitioner(self) -> str:
        return str(self.userinfo.get("SubjectNameID") or self.userinfo.get("preferred_username") or "")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; PscError when malformed."""
    try:
        head, payload, sig = token.split(".")
        return (json.loads(_b64url_decode(head)), json.loads(_b64url_decode(payload)),
                f"{head}.{payload}".encode("ascii"), _b64url_decode(sig))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PscError(f"jeton JWT illisible ({type(exc).__name__})") from None


class PscClient:
    """OIDC relying party and introspection client, configured from the DRIMbox's ``peers`` settings."""

    def __init__(self, config: Any, *, timeout_s: float = 5.0):
        psc = config.peers.get("psc") or {}
        if not psc.get("issuer") or not psc.get("client_id"):
            raise PscError("Pro Santé Connect non configuré (peers.psc)")
        self.settings = psc
        self.client_id = str(psc["client_id"])
        self.secret = psc.get("client_secret")
        self.issuer = str(psc["issuer"])
        self.discovery_url = str(psc.get("discovery_url") or self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        self._metadata: dict[str, Any] | None = None
        proxy = config.peers.get("proxy") or {}
        route = (proxy.get("routes") or {}).get("psc")
        self.via_proxy = bool(route)
        if route:  # back channel through the Proxy e-santé, mTLS with the ORG AUTH_CLI certificate
            creds = config.certs[proxy.get("client_certificate") or "org_auth_cli"]
            ctx = netutil.tls_context([proxy["ca_file"]], creds["chain"], creds["key"])
            self._back = lambda url: route.rstrip("/") + urlsplit(url).path
        else:
            ctx = netutil.tls_context([psc["ca_file"]])
            self._back = lambda url: url
        self._http = netutil.client(config.hosts, ctx, timeout_s=timeout_s)
        self._jwks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    # -- discovery ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """PSC's OpenID Provider metadata (fetched once; PscError when missing, unreadable or of another issuer)."""
        with self._lock:
            if self._metadata is None:
                doc = self._json("get", self.discovery_url, "document de découverte")
                if doc.get("issuer") != self.issuer:
                    raise PscError(f"document de découverte d'un autre émetteur ({doc.get('issuer')})")
                for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
                    if not str(doc.get(name) or "").startswith("https://"):
                        raise PscError(f"document de découverte sans {name} https")
                self._metadata = doc
            return self._metadata

    def endpoint(self, name: str) -> str:
        """An endpoint URL of the discovery document (``authorization_endpoint``, ``token_endpoint``…)."""
        url = self.metadata().get(name)
        if not url:
            raise PscError(f"Pro Santé Connect n'annonce pas de {name}")
        return str(url)

    # -- login (authorization code flow) -----------------------------------------------------------
    def authorization(self, redirect_uri: str) -> LoginRequest:
        """The authorization request to send the browser to, with fresh state and nonce."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                           "scope": self.settings.get("scope") or "openid scope_all", "state": state, "nonce": nonce,
                           "acr_values": self.settings.get("acr_values") or "eidas1"})
        endpoint = self.endpoint("authorization_endpoint")
        return LoginRequest(state, nonce, f"{endpoint}{'&' if '?' in endpoint else '?'}{query}")

    def _client_auth(self, form: dict[str, str]) -> dict[str, Any]:
        """RFC 8705 through the proxy (client_id only), else client_secret_basic."""
        if self.via_proxy or not self.secret:
            form["client_id"] = self.client_id
            return {}
        return {"auth": (self.client_id, self.secret)}

    def complete(self, code: str, redirect_uri: str, nonce: str) -> Login:
        """Exchange the code, verify the ID token (signature, iss, aud, exp, nonce), read the UserInfo."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        kw = self._client_auth(form)
        data = self._json("post", self.endpoint("token_endpoint"), "échange du code", data=form, **kw)
        access, id_token = data.get("access_token"), data.get("id_token")
        if not access or not id_token:
            raise PscError("réponse du point de jeton sans access_token ou id_token")
        claims = self.verify_id_token(id_token, nonce)
        userinfo = self._json("get", self.endpoint("userinfo_endpoint"), "UserInfo",
                              headers={"Authorization": f"Bearer {access}"})
        return Login(access, data.get("refresh_token"), id_token, claims, userinfo,
                     time.time() + float(data.get("expires_in") or 0), str(claims.get("sid") or ""))

    def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header, claims, signed, signature = decode_jwt(token)
        if header.get("alg") != "RS256":
            raise PscError(f"ID token signé en {header.get('alg')} (RS256 attendu)")
        key = self._key(str(header.get("kid") or ""))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise PscError("signature de l'ID token invalide") from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer:
            raise PscError(f"ID token d'un autre émetteur ({claims.get('iss')})")
        if self.client_id not in audiences:
            raise PscError("ID token destiné à un autre client")
        if float(claims.get("exp") or 0) < time.time() - 30:
            raise PscError("ID token expiré")
        if not mutants.active("conso-nonce-unchecked") and (not nonce or claims.get("nonce") != nonce):
            raise PscError("nonce de l'ID token différent de celui de la demande (rejeu ?)")
        return claims

    def _key(self, kid: str) -> Any:
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

        jwks_uri = self.endpoint("jwks_uri")
        with self._lock:
            if kid not in self._jwks:
                jwks = self._json("get", jwks_uri, "JWKS")
                for jwk in jwks.get("keys", []):
                    if jwk.get("kty") == "RSA":
                        n = int.from_bytes(_b64url_decode(jwk["n"]), "big")
                        e = int.from_bytes(_b64url_decode(jwk["e"]), "big")
                        self._jwks[str(jwk.get("kid") or "")] = RSAPublicNumbers(e, n).public_key()
            if kid not in self._jwks:
                raise PscError(f"clé {kid!r} absente du JWKS de PSC")
            return self._jwks[kid]

    # -- introspection (Source side) ---------------------------------------------------------------
    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 answer for `token` (``active`` false on any failure, with ``error``)."""
        form = {"token": token, "token_type_hint": "access_token"}
        kw = self._client_auth(form)
        try:
            return self._json("post", self.endpoint("introspection_endpoint"), "introspection", data=form, **kw)
        except PscError as exc:
            return {"active": False, "error": str(exc)}

    # -- transport ---------------------------------------------------------------------------------
    def _json(self, method: str, url: str, what: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method.upper(), self._back(url), **kw)
        except httpx.HTTPError as exc:
            raise PscError(f"PSC injoignable ({what}) : {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise PscError(f"PSC : {what} refusé (HTTP {resp.status_code} {resp.text[:120]})")
        try:
            data = resp.json()
        except ValueError:
            raise PscError(f"PSC : réponse {what} illisible") from None
        if not isinstance(data, dict):
            raise PscError(f"PSC : réponse {what} inattendue")
        return data
