"""HTTP plumbing of the reference DRIMbox: httpx clients that reach FQDNs through its hosts map.

The test bed has no DNS: the DRIMbox is installed with ``hosts`` (FQDN -> "ip:port"). A request to
``https://db7.350.mesimagesmedicales.fr/...`` connects to the mapped address while SNI, certificate
name checks and ``Host`` stay the FQDN. The reference's own code (no harness import).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx


class HostsTransport(httpx.HTTPTransport):
    """Connects to ``hosts[fqdn]`` when the FQDN is mapped; SNI and Host stay the FQDN."""

    def __init__(self, hosts: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts = {k.lower(): v for k, v in hosts.items()}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.hosts.get(request.url.host.lower())
        if target is not None:
            fqdn = request.url.host
            host, _, port = target.rpartition(":")
            request.url = request.url.copy_with(host=host.strip("[]"), port=int(port))
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": fqdn}
        return super().handle_request(request)


def client(hosts: Mapping[str, str], verify: ssl.SSLContext | bool, *, timeout_s: float = 10.0,
           **kwargs: Any) -> httpx.Client:
    """A pooled client through the hosts map (never reads proxy settings from the environment)."""
    return httpx.Client(transport=HostsTransport(hosts, verify=verify), timeout=httpx.Timeout(timeout_s),
                        trust_env=False, **kwargs)


def tls_context(trust: list[str], cert_chain: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """TLS >= 1.2 client context trusting the PEM files `trust`, presenting a certificate when given (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checked, certificate required
    for path in trust:
        ctx.load_verify_locations(cafile=path)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_chain:
        ctx.load_cert_chain(cert_chain, key)
    return ctx


def media_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; a=b; c="d"`` -> ("type/subtype", {"a": "b", "c": "d"}) (names lower-cased)."""
    import re

    media, _, rest = (content_type or "").partition(";")
    params = {}
    for m in re.finditer(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^;\s]*)\s*;?', rest):
        params[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
    return media.strip().lower(), params


def split_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body: [(headers with lower-case names, content)]; ValueError when malformed."""
    media, params = media_params(content_type)
    boundary = params.get("boundary")
    if not media.startswith("multipart/") or not boundary:
        raise ValueError(f"not a multipart body: {content_type!r}")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if first.startswith(delimiter):
        chunks[0] = first[len(delimiter):]
    elif delimiter in first:
        chunks[0] = first.split(delimiter, 1)[1]
    else:
        raise ValueError("multipart body without its first delimiter")
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            if chunk.startswith(b"\r\n"):
                head, content = b"", chunk[2:]
            else:
                raise ValueError("multipart part without a header/body separator")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    else:
        raise ValueError("multipart body truncated (no closing delimiter)")
    return parts
