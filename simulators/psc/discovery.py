"""Where the PSC is and what it publishes: URLs, hosts, discovery document, JWKS, the DUT's settings."""

from __future__ import annotations

from typing import Any

from simulators.httpsim import public_url
from simulators.psc.base import PscBase
from simulators.psc.model import (
    ACR,
    CLAIMS_SUPPORTED,
    DEFAULT_SCOPE,
    GRANT_CODE,
    GRANT_REFRESH,
    GRANT_TOKEN_EXCHANGE,
    OIDC_PATH,
    REALM,
    REALM_PATH,
    RESPONSE_MODES,
    SCOPES_SUPPORTED,
    WALLET_AUTH_PATH,
)
from simulators.psc.web import _json


class DiscoveryMixin(PscBase):
    """Addresses, endpoints and published metadata (discovery, realm, JWKS)."""

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

    def _h_discovery(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json(self.discovery())

    def _h_realm(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json({"realm": REALM, "token-service": self.base_url + OIDC_PATH,
                      "account-service": self.issuer + "/account", "tokens-not-before": 0})

    def _h_certs(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        return _json(self.jwks())
