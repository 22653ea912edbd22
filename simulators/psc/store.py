"""The token store: sessions and the tokens this PSC issued, minting, lookup, introspection."""

from __future__ import annotations

import uuid
from typing import Any

from drimcheck.jose import at_hash, fingerprint, sign_rs256, verify_rs256
from simulators.httpsim import ClientCert
from simulators.psc.base import PscBase
from simulators.psc.model import ACR, Practitioner, Session, TokenRecord, TokenSet


class TokenStoreMixin(PscBase):
    """Sessions and tokens (called under the lock by the endpoints and the scenario controls)."""

    def token_info(self, token: str) -> TokenRecord | None:
        """The record of a token given as raw string, jti or fingerprint; None if this PSC never issued it."""
        with self._lock:
            return self._find(token)

    def tokens(self, *, sid: str | None = None) -> list[TokenRecord]:
        """Every token issued (of one session when ``sid`` is given), oldest first."""
        with self._lock:
            return [t for t in self._tokens.values() if sid is None or t.sid == sid]

    def introspect(self, token: str) -> dict[str, Any]:
        """What the introspection endpoint answers for this token (no client authentication, no record)."""
        with self._lock:
            return self._introspection(token)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token signed by this PSC's key (signature only); JoseError otherwise."""
        return verify_rs256(token, self._key.public_key())

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
