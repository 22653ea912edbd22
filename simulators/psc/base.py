"""The shared state of the PSC simulator's parts (one object; each part is a mixin of it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from simulators.httpsim import HttpsSimulator, Recorder
from simulators.psc.model import OidcClient, Practitioner, Session, TokenRecord, _AuthCode, _Fault


class PscBase(HttpsSimulator):
    """The state every part of the PSC simulator shares (set by :class:`simulators.psc.PscSimulator`)."""

    pki: Any
    fqdn: str
    wallet_fqdn: str | None
    practitioner: Practitioner
    access_lifetime_s: int
    refresh_lifetime_s: int
    code_lifetime_s: int
    require_nonce: bool
    bind_tokens_to_cert: bool
    clock_offset_s: float
    trust_pem: Path
    server_cert: Any
    jwk: dict[str, Any]
    kid: str
    dut_client_id: str | None
    recorder: Recorder
    events: Recorder
    _public_port: int | str | None
    _key: rsa.RSAPrivateKey
    _lock: threading.RLock
    _clients: dict[str, OidcClient]
    _sessions: dict[str, Session]
    _codes: dict[str, _AuthCode]
    _tokens: dict[str, TokenRecord]  # by jti
    _by_fingerprint: dict[str, str]  # fingerprint -> jti
    _faults: dict[str, _Fault]
    _next_login: Practitioner | None
    _refuse_login: str | None
    _forge_nonce: bool

    def now(self) -> float:
        return time.time() + self.clock_offset_s
