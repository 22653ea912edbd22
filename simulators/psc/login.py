"""Front-channel endpoints: authorization (automatic login) and logout, with Keycloak's SSO cookie."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from drimcheck.jose import JoseError
from simulators.httpsim import token_facts
from simulators.psc.base import PscBase
from simulators.psc.model import REALM, RESPONSE_MODES, SESSION_COOKIE, OAuthError, Session, _AuthCode
from simulators.psc.web import _common_parent, _form_post_page, _parse_form, _single_params


class LoginEndpointsMixin(PscBase):
    """The authorization and logout endpoints and the SSO session cookie."""

    def _set_session_cookie(self, response: Any, session: Session) -> None:
        """Keycloak's SSO cookie, shared by the wallet and issuer hosts (their common parent domain)."""
        domain = _common_parent(self.fqdn, self.wallet_fqdn) if self.wallet_fqdn else None
        response.set_cookie(SESSION_COOKIE, f"{REALM}/{session.practitioner.sub}/{session.sid}", path="/",
                            domain=domain, secure=True, httponly=True, samesite="none")

    def _cookie_session(self, request: Any) -> Session | None:
        value = request.cookies.get(SESSION_COOKIE) or ""
        session = self._sessions.get(value.rpartition("/")[2]) if value.startswith(REALM + "/") else None
        return session if session is not None and session.ended_at is None else None

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
        from starlette.responses import HTMLResponse, RedirectResponse

        params = _single_params(request.url.query)
        form = _parse_form(body) if request.method == "POST" else {}
        if form.get("refresh_token"):
            return self._logout_backchannel(request, form, facts)
        params.update({k: v for k, v in form.items() if k != "client_secret"})
        hint, legacy = params.get("id_token_hint"), params.get("redirect_uri")
        facts.update(mode="frontchannel", id_token_hint=bool(hint), client_id=params.get("client_id"),
                     post_logout_redirect_uri=params.get("post_logout_redirect_uri"), legacy_redirect_uri=legacy)
        try:
            claims, target = self._logout_checks(params)
        except _LogoutRefused as refused:  # each error is a 400 page, never a redirect
            facts["outcome"] = refused.outcome
            return HTMLResponse(f"<!doctype html><title>Erreur</title><p>{refused.message}</p>", status_code=400)
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

    def _logout_backchannel(self, request: Any, form: dict[str, str], facts: dict[str, Any]) -> Any:
        """Keycloak's back-channel logout: ``refresh_token`` + client authentication ends its session (204)."""
        from starlette.responses import Response

        client = self._authenticate(request, form, facts)
        rec = self._find(form["refresh_token"])
        facts["presented"] = token_facts(form["refresh_token"])
        if rec is None or rec.kind != "refresh" or rec.client_id != client.client_id or \
                rec.state(self.now()) != "active":
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        facts.update(outcome="ok", sid=rec.sid, revoked=self._end_session(rec.sid), mode="backchannel")
        return Response(status_code=204)

    def _logout_checks(self, params: dict[str, str]) -> tuple[dict[str, Any], str | None]:
        """Keycloak's checks of a front-channel logout: the ID token hint's claims and where to send the browser
        (None: a "logged out" page); _LogoutRefused (outcome, French message) for the first check that fails."""
        hint, client_id = params.get("id_token_hint"), params.get("client_id")
        target = params.get("post_logout_redirect_uri")
        legacy = params.get("redirect_uri")
        claims: dict[str, Any] = {}
        if hint:
            try:
                claims = self.verify(hint)
            except JoseError:
                raise _LogoutRefused("invalid_id_token_hint", "Paramètre invalide : id_token_hint") from None
            if claims.get("typ") != "ID" or claims.get("iss") != self.issuer:
                raise _LogoutRefused("invalid_id_token_hint", "Paramètre invalide : id_token_hint")
            if client_id and client_id != claims.get("azp"):
                raise _LogoutRefused("client_id_mismatch",
                                     "Le paramètre client_id diffère du client pour lequel l'ID token a été émis")
        client = self._clients.get(client_id or str(claims.get("azp") or claims.get("aud") or ""))
        if client_id and client is None:
            raise _LogoutRefused("invalid_client_id", "Paramètre invalide : client_id")
        if target:
            if not hint and not client_id:
                raise _LogoutRefused("missing_id_token_hint", "Paramètre manquant : id_token_hint")
            if client is None or not client.redirect_allowed(target):
                raise _LogoutRefused("invalid_post_logout_redirect_uri", "URI de redirection invalide")
        elif legacy:
            if not any(c.redirect_allowed(legacy) for c in self._clients.values()):
                raise _LogoutRefused("invalid_redirect_uri", "URI de redirection invalide")
            target = legacy
        return claims, target


class _LogoutRefused(Exception):
    """A front-channel logout Keycloak refuses: the outcome recorded and the message of its error page."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.message = message
