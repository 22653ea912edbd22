"""The practitioner's browser, as drimcheck plays it: forms, redirects and cookies, every hop recorded.

A DRIMbox Conso is driven by a browser: the RIS posts the contextual call from the user's workstation,
the DRIMbox redirects to Pro Santé Connect, PSC redirects back, the DRIMbox shows a page and the user
clicks. :class:`Browser` does that with bounded waits: each hop at most ``request_s``, at most
``max_redirects`` redirects, and one overall deadline for a navigation; a failure ends the navigation
with the error recorded (never an exception, never a hang).

Names resolve without DNS: the DUT's FQDNs through ``[network]`` (scheme-specific address, SNI and
``Host`` = FQDN), the simulators' FQDNs through the campaign's hosts map, and the addresses of the
test bed given as ``bed`` (``host:port``, such as ``[dut] conso``) directly. Nothing else is
contacted: a redirect, a form action or a link to any other host is recorded as an Exchange with the
error « redirection hors du banc de test : <url> non contactée » and ends the navigation (the DUT
cannot send the practitioner's browser, its cookies or its tokens anywhere else). Each exchange is
bounded as a whole by ``request_s`` and in size (drimcheck.limits, as drimcheck.net).
Certificates are recorded, not verified (judged elsewhere).
Cookies are kept per host (name=value; ``Max-Age=0`` or a past ``Expires`` deletes), as a browser
would send them back; they are redacted in evidence like every credential.
"""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from drimcheck import limits
from drimcheck.config import Address, Sut
from drimcheck.evidence import EvidenceStore
from drimcheck.net import (Deadline, Exchange, TlsInfo, _capture_tls, bounded_client, check_headers, describe_error,
                           kept_prefix, read_body)

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
                 timeout_s: float | None = None, max_redirects: int = limits.MAX_REDIRECTS,
                 bed: Iterable[str | Address] = (), max_body: int = limits.MAX_DOCUMENT_BODY):
        """hosts: FQDN -> "ip:port" of drimcheck's simulators; bed: other addresses of the test bed
        reachable directly ("ip:port" or Address: the DUT's [dut] endpoints such as conso)."""
        self.sut = sut
        self.hosts = {k.lower(): v for k, v in hosts.items()}
        self.evidence = evidence
        self.timeout_s = timeout_s if timeout_s is not None else sut.timeouts.request_s
        self.max_redirects = min(max_redirects, limits.MAX_REDIRECTS)
        self.max_body = max_body
        self.cookies: dict[str, dict[str, str]] = {}  # host -> {name: value}
        self.bed = _bed_addresses(sut, self.hosts, bed)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._deadline = Deadline()
        self._client = bounded_client(ctx, self._deadline, self.timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- navigation -----------------------------------------------------------------------------
    def submit(self, url: str, fields: list[tuple[str, str]] | dict[str, str] | str, *, label: str,
               follow: bool = True, deadline_s: float | None = None, origin: str = "adresse") -> Navigation:
        """POST an urlencoded form (a raw string is sent as given), then follow the redirects.

        origin names where the URL comes from in the error recorded if it is off the bed (e.g.
        "action de formulaire" for a form the DUT's page carries)."""
        body = fields if isinstance(fields, str) else urlencode(fields)
        return self._navigate("POST", url, body.encode("utf-8"), label, follow, deadline_s,
                              {"Content-Type": "application/x-www-form-urlencoded"}, origin)

    def open(self, url: str, *, label: str, follow: bool = True, deadline_s: float | None = None,
             origin: str = "adresse") -> Navigation:
        return self._navigate("GET", url, None, label, follow, deadline_s, {}, origin)

    def _navigate(self, method: str, url: str, body: bytes | None, label: str, follow: bool,
                  deadline_s: float | None, headers: dict[str, str], origin: str = "adresse") -> Navigation:
        nav = Navigation()
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.timeout_s * (self.max_redirects + 1))
        for hop in range(self.max_redirects + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                nav.error = "navigation non terminée dans le délai imparti"
                return nav
            ex = self.request(method, url, label=f"{label}-{hop + 1}" if hop else label, content=body,
                              headers=headers, timeout=min(self.timeout_s, left),
                              origin="redirection" if hop else origin)
            nav.hops.append(ex)
            if not ex.ok:
                nav.error = ex.error
                return nav
            location = ex.header("location")
            posted = _auto_posted_form(ex) if follow and ex.status == 200 else None
            if posted is not None:  # a page that POSTs its form on load (OAuth 2.0 Form Post Response Mode)
                url, body = urljoin(url, posted[0]), urlencode(posted[1]).encode("utf-8")
                method, headers = "POST", {"Content-Type": "application/x-www-form-urlencoded"}
                continue
            if not follow or ex.status not in REDIRECTS or not location:
                return nav
            url = urljoin(url, location)
            if ex.status in (301, 302, 303):
                method, body, headers = "GET", None, {}
        nav.error = f"plus de {self.max_redirects} redirections"
        return nav

    # -- one request ----------------------------------------------------------------------------
    def _target(self, url: str) -> tuple[str, str | None, str] | None:
        """(URL to connect to, SNI, Host header) for a URL of the test bed; None when it is off the bed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None
        host = (parts.hostname or "").lower()
        default = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default
        except ValueError:
            return None
        host_header = host if port == default else f"{host}:{port}"
        ep = self.sut.network.get(host) or next((e for k, e in self.sut.network.items() if k.lower() == host), None)
        if ep is not None:
            addr = ep.https if parts.scheme == "https" else ep.http
            if addr is None:
                return None
            address = str(addr)
        elif host in self.hosts:
            address = self.hosts[host]
        elif (host.strip("[]"), port) in self.bed:
            return url, None, host_header
        else:
            return None
        rest = parts.path or "/"
        return f"{parts.scheme}://{address}{rest}" + (f"?{parts.query}" if parts.query else ""), \
            (host if parts.scheme == "https" else None), host_header

    def request(self, method: str, url: str, *, label: str, content: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None,
                origin: str = "adresse") -> Exchange:
        """One exchange, bounded as a whole by `timeout` and in size; a URL off the test bed is recorded, not fetched."""
        timeout = timeout if timeout is not None else self.timeout_s
        resolved = self._target(url)
        host = (urlsplit(url).hostname or "").lower()
        if resolved is None:
            ex = Exchange(label=label, method=method, url=url, connect_to="",
                          started_at=datetime.now(timezone.utc).isoformat(), request_headers=[], request_body=content,
                          error=f"{origin} hors du banc de test : {url} non contactée")
            if self.evidence is not None:
                ex.evidence = self.evidence.write_json(label, ex.to_evidence())
            return ex
        target, sni, host_header = resolved
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
        self._deadline.at = t0 + timeout
        body = io.BytesIO()
        try:
            with self._client.stream(method, target, headers=req_headers, content=content, timeout=timeout,
                                     extensions={"sni_hostname": sni} if sni else {}) as resp:
                if ex.tls:
                    _capture_tls(resp, ex.tls)
                ex.status = resp.status_code
                ex.response_headers = list(resp.headers.multi_items())[:limits.MAX_HEADERS]
                check_headers(resp)
                ex.response_body = read_body(resp, max_body=self.max_body, deadline=self._deadline.at, into=body)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes evidence
            ex.error = describe_error(exc, timeout, answered=ex.status is not None)
            ex.response_body = kept_prefix(body)
        finally:
            self._deadline.at = None
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


def _auto_posted_form(ex: Exchange) -> tuple[str, list[tuple[str, str]]] | None:
    """(action, fields) of a page a browser with JavaScript submits at once: ``<body onload="…submit()">`` and a
    POST form (the OAuth 2.0 Form Post Response Mode page of an OpenID provider); None otherwise."""
    if "html" not in (ex.header("content-type") or "").lower():
        return None
    text = ex.text()
    if "submit()" not in text:
        return None
    import lxml.html

    try:
        doc = lxml.html.fromstring(text)
    except (ValueError, lxml.etree.ParserError):
        return None
    body = doc.find(".//body") if doc.tag != "body" else doc
    forms = list(doc.iter("form"))
    if body is None or "submit()" not in (body.get("onload") or "") or not forms:
        return None
    form = forms[0]
    if (form.get("method") or "get").lower() != "post" or not form.get("action"):
        return None
    return form.get("action") or "", [(i.get("name"), i.get("value") or "") for i in form.iter("input")
                                      if i.get("name") and (i.get("type") or "text").lower() != "submit"]


def _bed_addresses(sut: Sut, hosts: dict[str, str], extra: Iterable[str | Address]) -> set[tuple[str, int]]:
    """(host, port) pairs of the test bed reachable directly: the given ones, the DUT's [network] and
    [dut] addresses, drimcheck's simulators ([simulators] and the hosts map)."""
    out: set[tuple[str, int]] = set()

    def add(value: Any) -> None:
        if isinstance(value, Address):
            if value.port:
                out.add((value.host.lower().strip("[]"), value.port))
        elif isinstance(value, str) and ":" in value:
            host, _, port = value.rpartition(":")
            if port.isdigit():
                out.add((host.lower().strip("[]"), int(port)))

    for ep in sut.network.values():
        add(ep.https)
        add(ep.http)
    for value in list(sut.dut.values()) + list(sut.simulators.values()) + list(hosts.values()) + list(extra):
        add(value)
    return out
