"""Minimal JOSE for drimcheck: RS256 JSON Web Tokens and JWKs, with `cryptography` only.

Used by the Pro Santé Connect simulator to sign its tokens, and usable by checks to verify a token
recorded in evidence against the JWKS the simulator published (pure functions, no network).

* :func:`sign_rs256` / :func:`verify_rs256` — compact JWS, alg RS256 only (what PSC/Keycloak uses).
* :func:`decode_unverified` — header and claims without any check (for recording and display).
* :func:`public_jwk` / :func:`key_from_jwk` — RSA public key <-> JWK (RFC 7517/7518), kid = RFC 7638
  thumbprint.
* :func:`fingerprint` — a stable, non-secret identifier of any token string (sha256 hex prefix), so
  evidence can correlate a token across simulators without storing it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "JoseError", "b64url", "b64url_decode", "sign_rs256", "verify_rs256", "decode_unverified",
    "public_jwk", "key_from_jwk", "jwk_thumbprint", "fingerprint", "at_hash",
]


class JoseError(ValueError):
    """A token that is not a well-formed or validly signed compact JWS (one readable line)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JoseError(f"invalid base64url: {exc}") from None


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _json_b64(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, *, kid: str | None = None,
               typ: str = "JWT") -> str:
    """A compact JWS (header.payload.signature) over the JSON claims, RSASSA-PKCS1-v1_5 SHA-256."""
    header: dict[str, Any] = {"alg": "RS256", "typ": typ}
    if kid:
        header["kid"] = kid
    signing_input = f"{_json_b64(header)}.{_json_b64(claims)}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS without verifying anything; JoseError when not a JWS of JSON."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or not all(parts[:2]):
        raise JoseError("not a compact JWS (expected three base64url parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JoseError(f"JWS header or payload is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("JWS header and payload must be JSON objects")
    return header, claims


def verify_rs256(token: str, keys: rsa.RSAPublicKey | dict[str, Any] | list[Any]) -> dict[str, Any]:
    """Verify the RS256 signature and return the claims (no time or audience check: callers judge those).

    ``keys`` is a public key, a JWKS dict (``{"keys": [...]}``) or a list of JWKs; with a JWKS the key
    whose ``kid`` matches the header is used (or the only key when the header has no kid).
    """
    header, claims = decode_unverified(token)
    if header.get("alg") != "RS256":
        raise JoseError(f"unsupported alg {header.get('alg')!r} (only RS256)")
    key = _select_key(keys, header.get("kid"))
    signing_input, _, signature = token.rpartition(".")
    try:
        key.verify(b64url_decode(signature), signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise JoseError("signature does not verify") from None
    return claims


def _select_key(keys: Any, kid: str | None) -> rsa.RSAPublicKey:
    if isinstance(keys, rsa.RSAPublicKey):
        return keys
    jwks = keys.get("keys", []) if isinstance(keys, dict) else list(keys)
    candidates = [k for k in jwks if isinstance(k, dict) and k.get("kty") == "RSA"]
    if kid is not None:
        candidates = [k for k in candidates if k.get("kid") == kid]
    if len(candidates) != 1:
        raise JoseError(f"no unique RSA key for kid {kid!r} in the JWKS")
    return key_from_jwk(candidates[0])


def public_jwk(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, *, use: str = "sig") -> dict[str, Any]:
    """The public JWK of an RSA key, kid = its RFC 7638 thumbprint, alg RS256."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = pub.public_numbers()
    jwk = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    return {"kid": jwk_thumbprint(jwk), **jwk, "alg": "RS256", "use": use}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK (base64url)."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    try:
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, ValueError, TypeError) as exc:
        raise JoseError(f"invalid RSA JWK: {exc}") from None


def fingerprint(token: str) -> str:
    """A non-secret identifier of a token string: the first 32 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def at_hash(access_token: str) -> str:
    """OIDC at_hash for RS256: base64url of the left half of SHA-256(access_token)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url(digest[:16])
