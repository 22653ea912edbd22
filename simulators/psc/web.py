"""HTTP helpers of the PSC simulator: JSON and OAuth error answers, form parsing, hosts, cookies, pages."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.x509.oid import NameOID

from drimcheck.jose import fingerprint
from simulators.httpsim import redact_url
from simulators.psc.model import OAuthError


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
    for x, y in zip(la, lb, strict=False):  # labels up to the shorter name
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
