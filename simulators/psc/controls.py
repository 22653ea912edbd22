"""Scenario controls: clients, who logs in, faults and unavailability, tokens minted, revoked, expired."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from simulators.httpsim import token_facts
from simulators.psc.base import PscBase
from simulators.psc.model import DEFAULT_SCOPE, ENDPOINTS, OidcClient, Practitioner, TokenSet, _Fault
from simulators.psc.web import _describe_target


class ScenarioControlsMixin(PscBase):
    """What a scenario does to the PSC (each action is an event of the timeline)."""

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
