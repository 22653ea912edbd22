"""ANS whitelist endpoint simulator: serves one whitelist vector over HTTPS, switchable per scenario.

It stands for the raw GitHub file of `ansforge/DRIM-M_liste-blanche` (a market certificate, plain
GET) and answers as raw.githubusercontent.com does: ``text/plain; charset=utf-8``, ``max-age=300``, a
strong ETag with 304 to a matching ``If-None-Match``, gzip when the client accepts it (docs/simulators.md).
CRLs and CA certificates are published in plain HTTP by the IGC-Santé simulator (simulators/igc.py), which also
serves as the out-of-band canary of the XXE vector: a DUT whose XML parser loads external entities makes a
request there.

Vectors (drimbox-spec §2.4 and the attacks of the trust-space issue) are built lazily from the
run's PKI and cached, so each is signed once per run. Every request is recorded; nothing is judged.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fixtures import whitelist as wl
from fixtures.pki import TestPKI, org_name
from simulators.peer_conso import PeerIdentities

LIST_PATH = "/ansforge/DRIM-M_liste-blanche/main/LISTEBLANCHE_DRIM-M_SIGNEE.xml"
CANARY_PATH = "/xxe-canary/"
SIGNER_DN = org_name("Liste Blanche DRIM-M", "318751275100020", "AGENCE DU NUMERIQUE EN SANTE", "Paris (75)")
NOMINAL = "nominale"
DOWNLOAD_TIMEOUT_S = 1.0  # what the embedded reference is configured with for its download


@dataclass(frozen=True)
class Vector:
    id: str
    title: str  # French
    kind: str  # "valide" | "signature" | "signataire" | "revocation" | "telechargement" | "analyseur"
    build: Callable[[], bytes] | None = None  # None: a download failure (no list served)
    status: int = 200
    mode: str = "full"  # "full" | "truncated" | "stall"


@dataclass
class Download:
    """One request to the endpoint, as the simulator saw it."""

    at: float  # monotonic
    at_utc: str
    client: str
    path: str
    vector: str | None
    status: int
    sent: int = 0
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at_utc": self.at_utc, "client": self.client, "path": self.path, "vector": self.vector,
                "status": self.status, "bytes_sent": self.sent, "complete": self.complete}


class WhitelistVectors:
    """Every list of the campaign: nominal content, peers, DUT entries, and the defective variants."""

    def __init__(self, pki: TestPKI, peers: PeerIdentities, *, dut_domains: list[wl.Domain] | None = None,
                 canary_url: str = "http://127.0.0.1:9/xxe-canary/x"):
        self.pki = pki
        self.peers = peers
        self.dut_domains = list(dut_domains or [])
        self.canary_url = canary_url
        self.generated_at = pki.now.replace(microsecond=0)
        self._cache: dict[str, bytes] = {}
        self._lock = threading.RLock()  # vectors derived from the nominal list build it under the same lock
        self.catalogue: dict[str, Vector] = {v.id: v for v in self._vectors()}

    # -- content --------------------------------------------------------------------------------
    def fillers(self) -> list[wl.Domain]:
        """ANS-like entries of other operators (their DNs come from the TEST list's style)."""
        return [wl.Domain("3", "db3.test.mesimagesmedicales.fr", "vi3.test.mesimagesmedicales.fr", "ANS",
                          "CN=db3.test.mesimagesmedicales.fr,OU=318751275100020,O=AGENCE DU NUMERIQUE EN SANTE,"
                          "ST=Paris (75),C=FR", "drim-m@esante.gouv.fr", "2024-12-10T11:27:12Z"),
                wl.Domain("175", "db175.test.mesimagesmedicales.fr", "", "E-MEDIA",
                          "CN=db175.test.mesimagesmedicales.fr,OU=300000001831981,O=MINISTERE DE TEST3198,"
                          "ST=Côte-d'Or (21),C=FR", "emedia-dev@e-media.fr", "2025-07-22T11:27:12Z")]

    def nominal_domains(self) -> list[wl.Domain]:
        return [*self.fillers(), *self.dut_domains, self.peers.domain("listed", "901"),
                self.peers.domain("withdrawn", "902")]

    def _sign(self, domains, signer=None, **kw) -> bytes:
        return wl.signed_whitelist(domains, signer or self.pki.whitelist_signer(), generated_at=self.generated_at, **kw)

    def signer(self, kind: str):
        """Signers of the WL-5..WL-8 vectors: same DN as ANS's unless the DN is the defect."""
        pki, now = self.pki, self.pki.now
        if kind == "cn":
            return pki.org_sign("Liste Grise DRIM-M", ou="318751275100020", organisation="AGENCE DU NUMERIQUE EN SANTE")
        if kind == "cn_suffix":  # look-alike: the expected CN followed by a suffix (equal only for a prefix match)
            return pki.org_sign("Liste Blanche DRIM-M Test", ou="318751275100020", organisation="AGENCE DU NUMERIQUE EN SANTE")
        if kind == "ou":
            return pki.org_sign("Liste Blanche DRIM-M", ou="300000009990777", organisation="DRIMCHECK ORGANISATION TIERCE")
        if kind == "rogue":
            return pki.issue("whitelist_signer_rogue", subject=SIGNER_DN, profile="org_sign", issuer="rogue_ca")
        if kind == "expired":
            return pki.issue("whitelist_signer_expired", subject=SIGNER_DN, profile="org_sign",
                             not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))
        if kind == "not_yet_valid":
            return pki.issue("whitelist_signer_future", subject=SIGNER_DN, profile="org_sign",
                             not_before=now + timedelta(days=2), not_after=now + timedelta(days=400))
        if kind == "revoked":
            return pki.issue("whitelist_signer_revoked", subject=SIGNER_DN, profile="org_sign", revoked=True)
        if kind in ("crl_unavailable", "crl_expired"):  # WL-9: issued by the intermediate without a valid CRL
            fault = kind.removeprefix("crl_")
            return pki.issue(f"whitelist_signer_{kind}", subject=SIGNER_DN, profile="org_sign",
                             issuer="igc_org_standard", crl_fault=fault)
        raise ValueError(kind)

    def preissue(self) -> None:
        """Certificates whose revocation must already be in the CRL when the DUT starts."""
        self.signer("revoked")
        self.pki.whitelist_signer()

    def warm_up(self) -> None:
        """Build (sign) every vector now, e.g. in a thread while the DUT starts: scenarios then only publish."""
        for vector in self.catalogue.values():
            if vector.build is not None:
                self.get(vector.id)
        for key in self.peers.keys():  # noqa: SIM118 - PeerIdentities is not a dict: keys() names what it can build
            self.peers.get(key)

    # -- vectors --------------------------------------------------------------------------------
    def _vectors(self) -> list[Vector]:
        p = self.peers
        nominal = self.nominal_domains

        def with_unlisted() -> list[wl.Domain]:
            return [*nominal(), p.domain("unlisted", "903")]

        def unlisted_dn() -> str:
            return p.get("unlisted").dn

        def tampered() -> bytes:  # signed with db913, served with db903: one digit changed in <db> and in the DN
            decoy = p.domain("unlisted", "903", dn=unlisted_dn().replace("CN=db903", "CN=db913"))
            decoy = replace(decoy, db=decoy.db.replace("db903", "db913"))
            data = self._sign([*nominal(), decoy])
            data = wl.replace_once(data, "<db>db913.", "<db>db903.")
            return wl.replace_once(data, "CN=db913.", "CN=db903.")

        def whitespace() -> bytes:  # signed with a double space in the DN, served with a single one
            dn = unlisted_dn()
            org = dn.split(",O=", 1)[1].split(",", 1)[0]
            doubled = org.replace(" ", "  ", 1)
            data = self._sign([*nominal(), p.domain("unlisted", "903", dn=dn.replace(org, doubled))])
            return wl.replace_once(data, doubled, org)

        def comment() -> bytes:  # valid list; the DN ends "C=FRX", a comment before "X" fools first-text-node readers
            data = self._sign([*nominal(), p.domain("unlisted", "903", dn=unlisted_dn() + "X")])
            return wl.insert_comment(data, "X</DNCertificatOperateur>", " ")

        def expansion() -> bytes:
            data = wl.add_doctype(self.get(NOMINAL), wl.entity_expansion_doctype())
            return wl.replace_once(data, b"</ds:Object>", b"<Expansion>&lol9;</Expansion></ds:Object>")

        def fmt_2024() -> bytes:
            domains = [replace(d, extra={"ResponsableContact": d.support_contact})
                       for d in [*nominal(), p.domain("added", "904")]]
            return self._sign(domains, namespace=wl.NS_2024, key_info="leaf-with-subject",
                              mime_type="application/octet-stream")

        now = self.pki.now
        return [
            Vector(NOMINAL, "liste nominale signée par le signataire ANS", "valide", lambda: self._sign(nominal())),
            Vector("retrait", "liste signée dont la DRIMbox db902 est retirée", "valide",
                   lambda: self._sign([d for d in nominal() if d.db != p.get("withdrawn").fqdn])),
            Vector("format-2024", "liste signée au format 2024 (autre espace de noms, ResponsableContact, KeyInfo "
                   "réduit au signataire) ajoutant la DRIMbox db904", "valide", fmt_2024),
            Vector("commentaire", "liste signée valide dont un DN se termine par « C=FRX », un commentaire XML inséré "
                   "avant « X » après signature", "valide", comment),
            Vector("non-signee", "liste non signée ajoutant la DRIMbox db903 (comme la liste « corrompue » ANS)",
                   "signature", lambda: wl.build_whitelist(with_unlisted(), generated_at=self.generated_at)),
            Vector("contenu-altere", "liste signée dont un <db> et son DN sont modifiés d'un caractère après "
                   "signature (db913 devient db903)", "signature", tampered),
            Vector("espace-modifie", "liste signée dont un espace d'un DN est modifié après signature", "signature",
                   whitespace),
            Vector("proprietes-alterees", "liste signée ajoutant db903 dont le SigningTime est modifié après "
                   "signature", "signature",
                   lambda: wl.alter_signing_time(self._sign(with_unlisted()), now + timedelta(hours=1))),
            Vector("proprietes-non-signees", "liste ajoutant db903 signée sans référence aux SignedProperties "
                   "(XMLDSig simple, pas XAdES)", "signature", lambda: self._sign(with_unlisted(), sign_properties=False)),
            Vector("enveloppe-injectee", "liste nominale signée, un Domaine db903 non signé caché dans ds:Object",
                   "signature", lambda: wl.inject_domain_in_object(self.get(NOMINAL), p.domain("unlisted", "903"))),
            Vector("enveloppe-deplacee", "nouvelle liste non signée ajoutant db903, contenant la liste signée "
                   "déplacée", "signature",
                   lambda: wl.move_signed_list(self.get(NOMINAL), with_unlisted(), generated_at=self.generated_at)),
            Vector("identifiants-dupliques", "liste nominale signée, un second élément portant l'Id des "
                   "SignedProperties et un Domaine db903", "signature",
                   lambda: wl.duplicate_signed_properties_id(self.get(NOMINAL), p.domain("unlisted", "903"))),
            Vector("signataire-cn", "liste ajoutant db903 signée par un certificat ORG SIGN de la même AC, CN "
                   "« Liste Grise DRIM-M »", "signataire", lambda: self._sign(with_unlisted(), self.signer("cn"))),
            Vector("signataire-cn-suffixe", "liste ajoutant db903 signée par un certificat ORG SIGN de la même AC, CN "
                   "« Liste Blanche DRIM-M Test » (CN attendu suivi d'un suffixe)", "signataire",
                   lambda: self._sign(with_unlisted(), self.signer("cn_suffix"))),
            Vector("signataire-ou", "liste ajoutant db903 signée par un certificat « Liste Blanche DRIM-M » d'une "
                   "autre organisation (OU différente)", "signataire",
                   lambda: self._sign(with_unlisted(), self.signer("ou"))),
            Vector("signataire-autre-ac", "liste ajoutant db903 signée par un certificat au DN du signataire ANS "
                   "émis par une AC imitant l'IGC-Santé", "signataire",
                   lambda: self._sign(with_unlisted(), self.signer("rogue"))),
            Vector("signataire-expire", "liste ajoutant db903 signée (pendant sa validité) par un certificat "
                   "signataire expiré depuis", "signataire",
                   lambda: self._sign(with_unlisted(), self.signer("expired"), signing_time=now - timedelta(days=2))),
            Vector("signataire-pas-encore-valide", "liste ajoutant db903 signée par un certificat signataire pas "
                   "encore valide", "signataire", lambda: self._sign(with_unlisted(), self.signer("not_yet_valid"))),
            Vector("signataire-revoque", "liste ajoutant db903 signée par un certificat signataire révoqué (CRL)",
                   "signataire", lambda: self._sign(with_unlisted(), self.signer("revoked"))),
            Vector("crl-injoignable", "liste ajoutant db903 signée par un certificat signataire d'une autre AC "
                   "intermédiaire IGC-Santé dont la CRL est injoignable (HTTP 503) : révocation inconnue", "revocation",
                   lambda: self._sign(with_unlisted(), self.signer("crl_unavailable"))),
            Vector("crl-perimee", "liste ajoutant db903 signée par un certificat signataire d'une autre AC "
                   "intermédiaire IGC-Santé dont la seule CRL publiée est périmée (nextUpdate dépassé d'un jour) : "
                   "révocation inconnue", "revocation", lambda: self._sign(with_unlisted(), self.signer("crl_expired"))),
            Vector("doctype-xxe", "liste nominale signée précédée d'une DTD à entité externe (XXE) pointant vers "
                   "un témoin", "analyseur", lambda: wl.add_doctype(self.get(NOMINAL), wl.xxe_doctype(self.canary_url))),
            Vector("expansion-entites", "liste nominale signée précédée d'une DTD d'expansion d'entités (« billion "
                   "laughs », 10^9 copies)", "analyseur", expansion),
            Vector("http-404", "téléchargement : HTTP 404", "telechargement", status=404),
            Vector("http-500", "téléchargement : HTTP 500", "telechargement", status=500),
            Vector("tronquee", "téléchargement : réponse tronquée (la moitié de la liste nominale annoncée entière)",
                   "telechargement", lambda: self.get(NOMINAL), mode="truncated"),
            Vector("delai-depasse", "téléchargement : aucune réponse (le serveur se tait puis coupe)", "telechargement",
                   mode="stall"),
        ]

    def get(self, vector_id: str) -> bytes:
        """The bytes of a vector (built and signed once per run)."""
        vector = self.catalogue[vector_id]
        if vector.build is None:
            raise ValueError(f"vector {vector_id} serves no list")
        with self._lock:
            if vector_id not in self._cache:
                self._cache[vector_id] = vector.build()
            return self._cache[vector_id]


class WhitelistEndpoint:
    """HTTPS endpoint serving the current vector at LIST_PATH; every request recorded."""

    def __init__(self, vectors: WhitelistVectors, server_cert, *, host: str = "127.0.0.1", port: int = 0,
                 stall_s: float = 10.0, canary_requests: Callable[[], list[dict]] | None = None):
        self.vectors = vectors
        self.peers = vectors.peers  # the peer DRIMbox identities the lists are made of
        self.server_cert = server_cert
        self.host, self.port = host, port
        self.stall_s = stall_s
        self.canary_requests = canary_requests or (lambda: [])
        self.vector = NOMINAL
        self.published_at = time.monotonic()
        self.nominal_in_force = False  # the DUT is known to have applied the nominal list since it was published
        self.startup_downloads: list[Download] | None = None  # observed before drimcheck's first refresh trigger
        self._log: list[Download] = []
        self._lock = threading.Lock()
        self._server = None  # simulators.httpsim.SimServer once started

    # -- control ----------------------------------------------------------------------------------
    def publish(self, vector_id: str) -> Vector:
        """Serve this vector from now on (built beforehand, so the DUT never waits for a signature)."""
        vector = self.vectors.catalogue[vector_id]
        if vector.build is not None:
            self.vectors.get(vector_id)
        with self._lock:
            self.vector = vector_id
            self.published_at = time.monotonic()
            self.nominal_in_force = False
        return vector

    def downloads(self, since: float | None = None) -> list[Download]:
        with self._lock:
            return [d for d in self._log if d.path == LIST_PATH and (since is None or d.at >= since)]

    def requests(self) -> list[Download]:
        with self._lock:
            return list(self._log)

    def wait_for_download(self, since: float, deadline_s: float) -> list[Download]:
        """Bounded wait for the DUT to request the list after `since`; returns the downloads seen (maybe none)."""
        end = time.monotonic() + deadline_s
        while True:
            found = self.downloads(since)
            if found and all(d.complete or d.status != 200 for d in found) or time.monotonic() >= end:
                return found
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{LIST_PATH}"

    def dut_settings(self) -> dict[str, Any]:
        return {"url": self.url, "ca": str(self.vectors.pki.market_trust_pem), "timeout_s": DOWNLOAD_TIMEOUT_S,
                "refresh_s": 86400, "expected_signer": {"cn": "Liste Blanche DRIM-M", "ou": "318751275100020"}}

    # -- campaign hooks ---------------------------------------------------------------------------
    def after_dut_ready(self, runtime: Any) -> None:
        """Record the DUT's startup download (bounded wait), then make sure the nominal list is in force."""
        deadline = (runtime.dut_ready_at or time.monotonic()) + runtime.sut.timeouts.whitelist_s
        while not self.downloads() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.startup_downloads = self.downloads()
        if any(d.vector == NOMINAL and d.complete for d in self.startup_downloads):
            self.nominal_in_force = True
            return
        try:
            self.ensure_nominal(runtime)
        except Exception:  # noqa: BLE001 - no trigger for this DUT: scenarios will say so
            pass

    def ensure_nominal(self, runtime: Any) -> None:
        """Publish the nominal list and have the DUT apply it, unless it is already known to be in force."""
        if self.vector == NOMINAL and self.nominal_in_force:
            return
        self.publish(NOMINAL)
        started = runtime.refresh_whitelist()
        if any(d.complete for d in self.wait_for_download(started, runtime.sut.timeouts.whitelist_s)):
            self.nominal_in_force = True

    # -- HTTP -------------------------------------------------------------------------------------
    def _record(self, entry: Download) -> Download:
        with self._lock:
            self._log.append(entry)
        return entry

    def _rejected(self, entry: dict[str, Any], scope: dict[str, Any]) -> None:
        """SimServer.on_rejected: a request refused for a bound (headers, body, time) is a failed download."""
        self._record(Download(time.monotonic(), datetime.now(UTC).isoformat(), entry.get("client") or "?",
                              entry.get("path") or "", None, int(entry.get("status") or 0),
                              extra={"rejected": entry.get("reason")}))
        return None

    async def _app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        client = f"{scope['client'][0]}:{scope['client'][1]}" if scope.get("client") else "?"
        with self._lock:
            vector = self.vectors.catalogue[self.vector]
        entry = self._record(Download(time.monotonic(), datetime.now(UTC).isoformat(), client, path,
                                      vector.id if path == LIST_PATH else None, 0))
        if path != LIST_PATH or scope["method"] not in ("GET", "HEAD"):
            entry.status = 404 if path != LIST_PATH else 405
            await self._respond(send, entry.status, b"not found\n" if entry.status == 404 else b"")
            entry.complete = True
            return
        if vector.mode == "stall":
            entry.status = 0
            try:  # silence until the client gives up (or stall_s), then hang up without an answer
                await asyncio.wait_for(self._until_disconnect(receive), timeout=self.stall_s)
            except TimeoutError:
                pass
            entry.complete = True
            return
        if vector.build is None:
            entry.status = vector.status
            await self._respond(send, vector.status, f"{vector.status} {vector.title}\n".encode())
            entry.complete = True
            return
        body = self.vectors.get(vector.id)
        request_headers = _headers(scope)
        etag = b'"' + hashlib.sha1(body).hexdigest().encode() + b'"'
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"max-age=300"),
                   (b"etag", etag), (b"vary", b"Authorization,Accept-Encoding,Origin")]
        if vector.mode == "full" and _etag_matches(request_headers.get("if-none-match", ""), etag):
            # as raw.githubusercontent.com: the list did not change since the client's copy (RFC 9110 §13.1.2)
            entry.status, entry.complete = 304, True
            entry.extra["conditional"] = True
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if vector.mode == "full" and _accepts_gzip(request_headers.get("accept-encoding", "")):
            body = gzip.compress(body, mtime=0)  # as raw.githubusercontent.com when the client asks for it
            headers.append((b"content-encoding", b"gzip"))
            entry.extra["content_encoding"] = "gzip"
        headers.append((b"content-length", str(len(body)).encode()))
        entry.status = 200
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if vector.mode == "truncated":
            part = wl.truncate(body)
            await send({"type": "http.response.body", "body": part, "more_body": True})
            entry.sent, entry.complete = len(part), True
            return  # the declared length is never reached: the server closes the connection
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        entry.sent, entry.complete = len(body), True

    @staticmethod
    async def _until_disconnect(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @staticmethod
    async def _respond(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def start(self) -> None:
        import ssl

        from simulators.httpsim import SimServer

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_cert.chain_path), str(self.server_cert.key_path))
        try:
            self._server = SimServer(self._app, host=self.host, port=self.port, ssl_context=ctx,
                                     name="whitelist-endpoint", interface="asgi3",
                                     on_rejected=self._rejected).start()
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"whitelist endpoint did not start on {self.host}:{self.port} ({exc})") from None
        self.port = self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers (lower-case names; repeated ones joined), at most MAX_HEADERS of them."""
    from drimcheck.limits import MAX_HEADERS

    out: dict[str, str] = {}
    for k, v in (scope.get("headers") or [])[:MAX_HEADERS]:
        key = k.decode("latin-1").lower()
        out[key] = f"{out[key]}, {v.decode('latin-1')}" if key in out else v.decode("latin-1")
    return out


def _etag_matches(header: str, etag: bytes) -> bool:
    """If-None-Match (RFC 9110 §13.1.2, weak comparison): ``*`` or one of the listed tags."""
    tags = [t.strip() for t in header.split(",") if t.strip()]
    return "*" in tags or etag.decode() in [t.removeprefix("W/") for t in tags]


def _accepts_gzip(header: str) -> bool:
    """Accept-Encoding (RFC 9110 §12.5.3) lists gzip (or ``*``) with a non-zero q."""
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


def new_canary_url(base: str) -> str:
    return f"{base.rstrip('/')}{CANARY_PATH}{secrets.token_hex(8)}"


def start_for_campaign(runtime: Any) -> WhitelistEndpoint:
    """Campaign hook: the endpoint at [simulators] whitelist, nominal list published, peers' certificates issued."""
    addr = runtime.simulator_address("whitelist")
    pki = runtime.pki
    peers = PeerIdentities(pki)
    peers.preissue()
    dut_domains = []
    if runtime.sut.embedded:  # the DUT's own entries (an external DUT's DN is not known in advance)
        for i, p in enumerate(runtime.sut.pacs, 1):
            cert = pki.serv_ssl(p.db)
            dut_domains.append(wl.Domain(str(100 + i), p.db, p.vi, "DRIMBOX SOUS TEST", cert.subject_dn,
                                         "support@drimcheck.test", "2026-01-01T00:00:00Z"))
    if "conso" in runtime.sut.roles:  # the peer Source simulators meant to be listed (simulators/peers.py)
        from simulators.peers import DEFAULT_PEERS

        for i, spec in enumerate(s for s in DEFAULT_PEERS if s.whitelisted):
            cert = pki.serv_ssl(spec.fqdn, ou=spec.structure_id, organisation=spec.organisation)
            n, registry = spec.fqdn.split(".")[0][2:], spec.fqdn.split(".")[1]
            dut_domains.append(wl.Domain(str(200 + i), spec.fqdn, f"vi{n}.{registry}.mesimagesmedicales.fr",
                                         spec.organisation, cert.subject_dn, "support@drimcheck.test",
                                         "2026-01-01T00:00:00Z"))
    igc = runtime.sims.get("igc")
    canary = new_canary_url(igc.url if igc is not None else "http://127.0.0.1:9")
    vectors = WhitelistVectors(pki, peers, dut_domains=dut_domains, canary_url=canary)
    vectors.preissue()
    server_cert = pki.issue("whitelist_endpoint", subject=org_name("raw.githubusercontent.drimcheck.test", "",
                                                                   "DRIMCHECK LISTE BLANCHE"),
                            profile="market_ov", issuer="market_ca", san=["raw.githubusercontent.drimcheck.test", addr.host])
    endpoint = WhitelistEndpoint(vectors, server_cert, host=addr.host, port=addr.port,
                                 stall_s=runtime.sut.timeouts.whitelist_s,
                                 canary_requests=(lambda: [r for r in igc.requests
                                                           if (r.get("path") or "").startswith(CANARY_PATH)])
                                 if igc is not None else None)
    # written now (they are lazy): the trust files an external DUT loads from DRIMCHECK_PKI_DIR/trust/
    pki.igc_trust_pem, pki.igc_chain_pem, pki.market_trust_pem  # noqa: B018 - read for the files the properties write
    endpoint.vectors.get(NOMINAL)
    endpoint.start()
    # the other keys and signatures are made while Orthanc and the DUT start (another process, another core)
    threading.Thread(target=_quietly, args=(vectors.warm_up,), name="whitelist-warm-up", daemon=True).start()
    return endpoint


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a vector that fails here fails again, visibly, when a scenario publishes it
        pass
