"""Back-channel endpoints: token (code, refresh, exchange), introspection, revocation, userinfo."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from drimcheck.jose import JoseError, decode_unverified
from simulators.httpsim import ClientCert, bearer_token, client_certificate, token_facts
from simulators.psc.base import PscBase
from simulators.psc.model import (
    DEFAULT_SCOPE,
    GRANT_CODE,
    GRANT_REFRESH,
    GRANT_TOKEN_EXCHANGE,
    REALM,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
    OAuthError,
    OidcClient,
    TokenSet,
)
from simulators.psc.web import _json, _parse_form


class TokenEndpointsMixin(PscBase):
    """The token, introspection, revocation and userinfo endpoints."""

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
