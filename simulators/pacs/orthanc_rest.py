"""Orthanc's REST API as the harness uses it: one bounded client, errors as one-line OrthancError."""

from __future__ import annotations

import functools
import ssl
import time
from typing import Any

import httpx

from simulators.pacs.orthanc_config import OrthancConfig, OrthancError, _one_line


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or SSL_CERT_FILE/DIR), built once per process: building it
    loads the CA bundle (~70 ms of CPU), and the harness opens a client per Orthanc start and restart."""
    return httpx.create_ssl_context()


class OrthancRest:
    """REST plumbing of a managed or external Orthanc (``base_url``, ``auth`` given by the handle)."""

    config: OrthancConfig
    _http: httpx.Client | None

    def client(self) -> httpx.Client:
        """A new httpx client on base_url with basic auth and bounded timeouts (the caller closes it)."""
        return httpx.Client(base_url=self.base_url, auth=self.auth, timeout=httpx.Timeout(30.0, connect=5.0),
                            verify=default_ssl_context())

    def _get_client(self) -> httpx.Client:
        if self._http is None:
            self._http = self.client()
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One REST call; any transport error or unexpected status becomes a one-line OrthancError."""
        try:
            response = self._get_client().request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise OrthancError(f"Orthanc {method} {path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise OrthancError(f"Orthanc {method} {path} at {self.base_url}: "
                               f"{type(exc).__name__}: {_one_line(str(exc)) or 'no detail'}") from None
        if response.status_code == 401:
            raise OrthancError(f"Orthanc {method} {path}: HTTP 401, credentials of user "
                               f"'{self.config.username}' rejected")
        if response.status_code not in ok:
            raise OrthancError(f"Orthanc {method} {path}: HTTP {response.status_code}: "
                               f"{_one_line(response.text, 200) or 'empty body'}")
        return response

    def system(self) -> dict[str, Any]:
        """GET /system (name, AET, ports, versions)."""
        return self._request("GET", "/system").json()

    def _wait_external(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._request("GET", "/system", timeout=2.0)
                return
            except OrthancError as exc:
                if "HTTP 401" in exc.message or time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)
