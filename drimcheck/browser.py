"""The practitioner's browser, as drimcheck plays it: forms, redirects and cookies, every hop recorded.

A DRIMbox Conso is driven by a browser: the RIS posts the contextual call from the user's workstation,
the DRIMbox redirects to Pro Santé Connect, PSC redirects back, the DRIMbox shows a page and the user
clicks. :class:`Browser` does that with bounded waits: each hop at most ``request_s``, at most
``max_redirects`` redirects, and one overall deadline for a navigation; a failure ends the navigation
with the error recorded (never an exception, never a hang).

Names resolve without DNS: the DUT's FQDNs through ``[network]`` (scheme-specific address, SNI and
``Host`` = FQDN), the simulators' FQDNs through the campaign's hosts map, anything else (an IP
address such as ``[dut] conso``) directly. Certificates are recorded, not verified (judged elsewhere).
Cookies are kept per host (name=value; ``Max-Age=0`` or a past ``Expires`` deletes), as a browser
would send them back; they are redacted in evidence like every credential.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from drimcheck.config import Sut
from drimcheck.evidence import EvidenceStore
from drimcheck.net import Exchange, TlsInfo, _capture_tls, describe_error

REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Navigation:
    """One user action and the redirects it led to; `final` is the last answer (or the failed hop)."""

    hops: list[Exchange] = field(default_factory=list)
    error: str | None = None

    @property
    def first(self) -> Exchange | None:
        return self.hops[0] if self.hops else None

    @property
    def final(self) -> Exchange | None:
        return self.hops[-1] if self.hops else None

    @property
    def evidence(self) -> list[str]:
        return [h.evidence for h in self.hops if h.evidence]

    def to_dict(self) -> dict[str, Any]:
        return {"hops": [{"method": h.method, "url": h.url, "status": h.status, "location": h.header("location"),
                          "error": h.error, "evidence": h.evidence} for h in self.hops], "error": self.error}


class Browser:
    """A cookie-keeping, redirect-following HTTP client for one user session."""

    def __init__(self, sut: Sut, hosts: dict[str, str], evidence: EvidenceStore | None, *,
                 timeout_s: float | None = None, max_redirects: int = 10):
        self.sut = sut
        self.hosts = {k.lower(): v for k, v in hosts.items()}
        self.evidence = evidence
        self.timeout_s = timeout_s if timeout_s is not None else sut.timeouts.request_s
        self.max_redirects = max_redirects
        self.cookies: dict[str, dict[str, str]] = {}  # host -> {name: value}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._client = httpx.Client(verify=ctx, trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- navigation -----------------------------------------------------------------------------
    def submit(self, url: str, fields: list[tuple[str, str]] | dict[str, str] | str, *, label: str,
               follow: bool = True, deadline_s: float | None = None) -> Navigation:
        """POST an urlencoded form (a raw string is sent as given), then follow the redirects."""
        body = fields if isinstance(fields, str) else urlencode(fields)
        return self._navigate("POST", url, body.encode("utf-8"), label, follow, deadline_s,
                              {"Content-Type": "application/x-www-form-urlencoded"})

    def open(self, url: str, *, label: str, follow: bool = True, deadline_s: float | None = None) -> Navigation:
        return self._navigate("GET", url, None, label, follow, deadline_s, {})

    def _navigate(self, method: str, url: str, body: bytes | None, label: str, follow: bool,
                  deadline_s: float | None, headers: dict[str, str]) -> Navigation:
        nav = Navigation()
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.timeout_s * (self.max_redirects + 1))
        for hop in range(self.max_redirects + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                nav.error = "navigation non terminée dans le délai imparti"
                return nav
            ex = self.request(method, url, label=f"{label}-{hop + 1}" if hop else label, content=body,
                              headers=headers, timeout=min(self.timeout_s, left))
            nav.hops.append(ex)
            if not ex.ok:
                nav.error = ex.error
                return nav
            location = ex.header("location")
            if not follow or ex.status not in REDIRECTS or not location:
                return nav
            url = urljoin(url, location)
            if ex.status in (301, 302, 303):
                method, body, headers = "GET", None, {}
        nav.error = f"plus de {self.max_redirects} redirections"
        return nav

    # -- one request ----------------------------------------------------------------------------
    def _target(self, url: str) -> tuple[str, str | None, str]:
        """(URL to connect to, SNI, Host header) for a URL of the test bed."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host_header = host if port == default else f"{host}:{port}"
        address = None
        ep = self.sut.network.get(host)
        if ep is not None:
            addr = ep.https if parts.scheme == "https" else ep.http
            address = str(addr) if addr is not None else None
        elif host in self.hosts:
            address = self.hosts[host]
        if address is None:
            return url, None, host_header
        rest = parts.path or "/"
        return f"{parts.scheme}://{address}{rest}" + (f"?{parts.query}" if parts.query else ""), \
            (host if parts.scheme == "https" else None), host_header

    def request(self, method: str, url: str, *, label: str, content: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Exchange:
        timeout = timeout if timeout is not None else self.timeout_s
        target, sni, host_header = self._target(url)
        host = (urlsplit(url).hostname or "").lower()
        req_headers = {"Host": host_header, "User-Agent": "drimcheck (navigateur du praticien)",
                       "Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **(headers or {})}
        jar = self.cookies.get(host)
        if jar:
            req_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        ex = Exchange(label=label, method=method, url=url, connect_to=urlsplit(target).netloc,
                      started_at=datetime.now(timezone.utc).isoformat(), request_headers=list(req_headers.items()),
                      request_body=content)
        if urlsplit(url).scheme == "https":
            ex.tls = TlsInfo(sni=sni or host)
        t0 = time.monotonic()
        try:
            with self._client.stream(method, target, headers=req_headers, content=content, timeout=timeout,
                                     extensions={"sni_hostname": sni} if sni else {}) as resp:
                if ex.tls:
                    _capture_tls(resp, ex.tls)
                ex.status = resp.status_code
                ex.response_headers = list(resp.headers.multi_items())
                chunks = []
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() - t0 > timeout:
                        raise httpx.ReadTimeout("body not complete within the deadline")
                ex.response_body = b"".join(chunks)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes evidence
            ex.error = describe_error(exc, timeout)
        finally:
            self._client.cookies.clear()  # cookies are ours to keep, per original host
        ex.elapsed_s = time.monotonic() - t0
        self._store_cookies(host, ex.response_headers)
        if self.evidence is not None:
            ex.evidence = self.evidence.write_json(label, ex.to_evidence())
        return ex

    def _store_cookies(self, host: str, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() != "set-cookie":
                continue
            pair, *attrs = [p.strip() for p in value.split(";")]
            key, eq, val = pair.partition("=")
            if not eq or not key:
                continue
            expired = False
            for attr in attrs:
                a, _, v = attr.partition("=")
                if a.strip().lower() == "max-age" and v.strip().lstrip("-").isdigit() and int(v) <= 0:
                    expired = True
                elif a.strip().lower() == "expires":
                    try:
                        expired = parsedate_to_datetime(v.strip()) < datetime.now(timezone.utc)
                    except (TypeError, ValueError):
                        pass
            jar = self.cookies.setdefault(host, {})
            if expired:
                jar.pop(key.strip(), None)
            else:
                jar[key.strip()] = val.strip()
