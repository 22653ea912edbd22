"""Reference DRIMbox, trust-space function: the ANS whitelist lifecycle, peer authorisation, TLS policy.

* Whitelist: downloaded at start, then daily (and on the test trigger: a loopback admin endpoint,
  ``POST /whitelist/refresh``, answered once the list is applied); every download verified
  (XAdES Baseline-B enveloped: XMLDSig with python-xmlsec, signing certificate from the signed
  properties, path to the IGC-Santé anchors with ``cryptography``'s verifier, signer CN and OU,
  validity, revocation from the CRL downloaded at the certificate's CRL distribution point);
  a list that fails leaves the last valid one in force; state and age in the HealthCheck.
* Peers: `allows_client(der)` (Source side): the client certificate chains to the IGC-Santé
  anchors, is within its validity, is not revoked (CRL checked at application level, cached until
  its nextUpdate and reloaded at each whitelist refresh) and its subject DN is a listed
  DNCertificatOperateur. `allows_host(fqdn)` (Conso side): the host is a listed ``db``.
* TLS: TLS 1.2 minimum on every HTTPS listener (`configure_tls`, called by service.serve).

This is drimcheck's golden DUT: its code is independent of drimcheck.whitelist (the offline
verifier) on purpose. Mutants (mutants-trust.toml) switch single behaviours off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import ssl
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simulators.drimbox import mutants

log = logging.getLogger("drimbox.trust")

NAMESPACES = ("https://github.com/ansforge/DRIM-M_DATA", "https://listeblanche.mesimagesmedicales.fr/schema")
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
MAX_AGE = timedelta(hours=48)  # beyond this, the list in force is stale: the DRIMbox reports DOWN
NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME (mutant only)


class Rejected(Exception):
    """The downloaded list is not applied; the message says why (French, shown in the HealthCheck)."""


class RevocationUnknown(Rejected):
    """No valid CRL could be had for a certificate: its revocation status is unknown (a rejection too)."""


@dataclass(frozen=True)
class ListInForce:
    domains: tuple[dict[str, str], ...]
    dns: frozenset[tuple]
    hosts: frozenset[str]
    generated_at: str
    sha256: str
    applied_at: datetime

    @property
    def cns(self) -> frozenset[str]:
        return frozenset(_cn_of(dn) for dn in self.dns)


def _norm(value: str) -> str:
    """RFC 4518-like comparison form: NFC, case folded, insignificant spaces removed."""
    return " ".join(unicodedata.normalize("NFC", value).casefold().split())


def dn_key(name) -> tuple:
    """An x509.Name as a comparable tuple ((oid, value), ...) in ASN.1 order."""
    return tuple((a.oid.dotted_string, _norm(str(a.value))) for a in name)


def _cn_of(key: tuple) -> str:
    return next((v for oid, v in key if oid == "2.5.4.3"), "")


class Function:
    def __init__(self, box: Any):
        from cryptography import x509

        self.box = box
        cfg = box.config
        self.settings = cfg.peers.get("whitelist") or {}
        self.period_s = float(self.settings.get("refresh_s", 86400))
        signer = self.settings.get("expected_signer") or {}
        self.expected_cn = signer.get("cn", "Liste Blanche DRIM-M")
        self.expected_ou = signer.get("ou", "318751275100020")
        anchors = []
        if cfg.trust.get("igc_chain"):
            with open(cfg.trust["igc_chain"], "rb") as fh:
                anchors = x509.load_pem_x509_certificates(fh.read())
        self.anchors = anchors
        extra = []
        if cfg.trust.get("client_extra"):  # deployment fault: a foreign hierarchy in the client truststore
            with open(cfg.trust["client_extra"], "rb") as fh:
                extra = x509.load_pem_x509_certificates(fh.read())
        self.client_anchors = anchors + extra
        self.state: ListInForce | None = None
        self.last_attempt: dict[str, Any] | None = None
        self.next_refresh: datetime | None = None
        self._refresh_lock = threading.Lock()
        self._crl_lock = threading.Lock()
        self._crls: dict[str, Any] = {}  # CRL distribution point URL -> CRL
        self._authorised: set[tuple] = set()  # mutant mtls-stale-authorizations only
        self._conso_hosts: set[str] | None = None  # mutant cov2-conso-whitelist-snapshot only
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._admin: ThreadingHTTPServer | None = None
        import httpx

        # long-lived clients: building one (and its TLS context) per request costs tens of milliseconds
        self._crl_http = httpx.Client(timeout=2.0, trust_env=False)
        ca = self.settings.get("ca")
        self._list_tls = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.get("url") and not mutants.active("wl-no-startup-download"):
            self.refresh("démarrage")
        self.next_refresh = datetime.now(UTC) + timedelta(seconds=self.period_s)
        daily = threading.Thread(target=self._daily, name="whitelist-daily", daemon=True)
        daily.start()
        self._threads.append(daily)
        admin = self.box.config.endpoints.get("admin")
        if admin:
            host, _, port = admin.rpartition(":")
            self._admin = ThreadingHTTPServer((host, int(port)), self._admin_handler())
            self._admin.daemon_threads = True
            t = threading.Thread(target=self._admin.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="trust-admin", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
        self._crl_http.close()

    def _daily(self) -> None:
        while not self._stop.wait(self.period_s):
            self.refresh("mise à jour quotidienne")

    def _admin_handler(self):
        function = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stall

            def do_POST(self) -> None:  # the name BaseHTTPRequestHandler dispatches to
                if self.path != "/whitelist/refresh":
                    self.send_error(404)
                    return
                body = json.dumps(function.refresh("déclencheur de test"), ensure_ascii=False, default=str).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    # -- routes, health, TLS -----------------------------------------------------------------------
    def routes(self) -> dict:
        from starlette.responses import HTMLResponse, PlainTextResponse
        from starlette.routing import Route

        out: dict = {}
        clear: list = []
        if mutants.active("vin-plain-http"):
            clear.append(Route("/", lambda request: HTMLResponse(
                f"<!doctype html><title>Visionneuse {self.box.config.name}</title><p>Visionneuse DRIMbox</p>")))
        if mutants.active("acme-stale"):  # webroot left with an old challenge file and directory listing on
            token = "Qx3v1t6bO0fYl2c8jW9sK5n4rT7uE1aZ0pLmNbVcXy"
            clear += [Route("/.well-known/acme-challenge/", lambda request: HTMLResponse(
                f'<html><body><h1>Index of /.well-known/acme-challenge/</h1><a href="{token}">{token}</a></body></html>')),
                Route(f"/.well-known/acme-challenge/{token}", lambda request: PlainTextResponse(
                    f"{token}.k8sDq0wTQqkQ1uH5pBv1rQm3n0aZx7yW2cE4fG6hJ8")) ]
        if mutants.active("cov2-acme-stale-path-variants"):
            clear.append(Route("/{path:path}", self._legacy_acme_webroot, methods=["GET", "HEAD"]))
        if clear:
            out[("vi", "http")] = clear
        return out

    def _legacy_acme_webroot(self, request: Any) -> Any:
        """Mutant cov2-acme-stale-path-variants: beside the purged webroot (exact prefix
        /.well-known/acme-challenge/), a legacy case-insensitive rule of the web server still maps the old
        webroot, never purged, with directory listing on: it answers the path without its trailing slash and
        any other case of it."""
        from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse

        path = request.url.path
        if path.startswith("/.well-known/acme-challenge/") or not path.lower().startswith("/.well-known/acme-challenge"):
            if path.startswith("/.well-known/acme-challenge/") and path != "/.well-known/acme-challenge/":
                return PlainTextResponse("not found", status_code=404)  # the purged webroot, as golden
            host = (request.headers.get("host") or "").split(":")[0]
            return RedirectResponse(f"https://{host}{path}", status_code=301)
        token = "Hk2v9t3bQ1fYm4c7jW0sL5n8rT2uE6aZ9pKmNbVcQz"
        rest = path[len("/.well-known/acme-challenge"):].strip("/")
        if not rest:
            return HTMLResponse(f'<html><body><h1>Index of {path}</h1><a href="{token}">{token}</a></body></html>')
        if rest == token:
            return PlainTextResponse(f"{token}.Vx7Dq2wTQpkR1uH5pBv9rQm3n0aZx1yW2cE4fG6hJ3")
        return PlainTextResponse("not found", status_code=404)

    def health_checks(self) -> list[dict[str, Any]]:
        state, now = self.state, datetime.now(UTC)
        data: dict[str, Any] = {"periode_s": int(self.period_s)}
        if state is None:
            status, data["etat"] = "DOWN", "absente"
        else:
            age = now - state.applied_at
            status = "UP" if age <= MAX_AGE else "DOWN"
            data.update(etat="valide" if age <= MAX_AGE else "perimee", domaines=len(state.domains),
                        date_generation=state.generated_at, appliquee_le=state.applied_at.isoformat(timespec="seconds"),
                        age_s=int(age.total_seconds()), empreinte=state.sha256[:16])
        if self.next_refresh is not None:
            data["prochaine_mise_a_jour"] = self.next_refresh.isoformat(timespec="seconds")
        if self.last_attempt is not None:
            data["derniere_tentative"] = self.last_attempt
        return [{"name": "Liste blanche", "status": status, "data": data}]

    def configure_tls(self, listener: Any, ctx: ssl.SSLContext) -> None:
        import warnings

        if mutants.active("tls-legacy-accepted"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if listener.role == "db":
            if self.box.config.trust.get("client_extra"):
                ctx.load_verify_locations(cafile=self.box.config.trust["client_extra"])
            if mutants.active("mtls-expiry-ignored"):
                ctx.verify_flags = ctx.verify_flags | NO_CHECK_TIME

    # -- whitelist lifecycle ----------------------------------------------------------------------
    def refresh(self, reason: str) -> dict[str, Any]:
        """Download, verify, apply or keep the previous list; returns the attempt as shown in the HealthCheck."""
        with self._refresh_lock:
            started = datetime.now(UTC)
            with self._crl_lock:
                self._crls.clear()  # CRLs are reloaded with every list
            try:
                data = self._download()
                new = self._verify(data)
            except Rejected as exc:
                attempt = {"date": started.isoformat(timespec="seconds"), "origine": reason, "resultat": "échec",
                           "motif": str(exc)}
                log.warning("whitelist refused (%s): %s", reason, exc)
                if mutants.active("wl-empty-on-failure"):
                    self.state = None
                if not mutants.active("wl-failure-hidden"):
                    self.last_attempt = attempt
                return attempt
            self.state = new
            self.next_refresh = started + timedelta(seconds=self.period_s)
            self.last_attempt = {"date": started.isoformat(timespec="seconds"), "origine": reason,
                                 "resultat": "succès", "motif": f"{len(new.domains)} domaine(s), générée le {new.generated_at}"}
            return self.last_attempt

    def _client(self, timeout: float):
        import httpx

        return httpx.Client(verify=self._list_tls, timeout=httpx.Timeout(timeout), trust_env=False)

    def _download(self) -> bytes:
        import httpx

        url = self.settings.get("url")
        if not url:
            raise Rejected("aucune URL de liste blanche configurée")
        try:
            with self._client(float(self.settings.get("timeout_s", 10))) as client:
                resp = client.get(url)
        except httpx.TimeoutException:
            raise Rejected("téléchargement : délai dépassé") from None
        except httpx.HTTPError as exc:
            raise Rejected(f"téléchargement : {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise Rejected(f"téléchargement : HTTP {resp.status_code}")
        return resp.content

    def _parser(self):
        from lxml import etree

        if mutants.active("wl-xxe"):  # what a default Java/Xerces-like parser does: DTDs and external entities
            parser = etree.XMLParser(load_dtd=True, resolve_entities=True, no_network=False, huge_tree=False)
            parser.resolvers.add(_NetworkResolver())
            return parser
        return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

    def _verify(self, data: bytes) -> ListInForce:
        from lxml import etree

        try:
            tree = etree.ElementTree(etree.fromstring(data, self._parser()))
        except etree.XMLSyntaxError as exc:
            raise Rejected(f"XML invalide : {exc}") from None
        root = tree.getroot()
        if (tree.docinfo.doctype or tree.docinfo.internalDTD is not None) and not mutants.active("wl-xxe"):
            raise Rejected("déclaration DOCTYPE refusée (entités XML interdites)")
        qname = etree.QName(root)
        namespaces = NAMESPACES[:1] if mutants.active("wl-strict-namespace") else NAMESPACES
        if qname.localname != "ListeBlancheDRIM-M" or qname.namespace not in namespaces:
            raise Rejected(f"format inconnu : {{{qname.namespace}}}{qname.localname}")
        if not mutants.active("wl-no-signature-check"):
            self._check_signature(root)
        domains = self._domains(root)
        dns, hosts = set(), set()
        for d in domains:
            hosts.add(d["db"].lower())
            try:
                from cryptography import x509

                dns.add(dn_key(x509.Name.from_rfc4514_string(d["dn"])))
            except ValueError:
                log.warning("unusable DNCertificatOperateur ignored: %r", d["dn"])
        generated = _text(root.find(f"{{{qname.namespace}}}DateDeGeneration"))
        return ListInForce(tuple(domains), frozenset(dns), frozenset(hosts), generated, hashlib.sha256(data).hexdigest(),
                           datetime.now(UTC))

    def _domains(self, root) -> list[dict[str, str]]:
        from lxml import etree

        ns = etree.QName(root).namespace
        if mutants.active("wl-wrapping"):
            elements = list(root.iter("{*}Domaine"))
        else:
            lists = root.findall(f"{{{ns}}}ListeDomaines")
            if len(lists) != 1:
                raise Rejected("ListeDomaines absent ou multiple")
            elements = lists[0].findall(f"{{{ns}}}Domaine")
        read = (lambda el: (el.text or "").strip()) if mutants.active("wl-comment-truncation") else _text
        out = []
        for el in elements:
            fields = {etree.QName(c).localname: read(c) for c in el if isinstance(c.tag, str)}
            if not fields.get("db") or not fields.get("DNCertificatOperateur"):
                raise Rejected("Domaine sans db ou sans DNCertificatOperateur")
            out.append({"db": fields["db"], "vi": fields.get("vi", ""), "dn": fields["DNCertificatOperateur"],
                        "denomination": fields.get("Denomination", "")})
        return out

    # -- signature -----------------------------------------------------------------------------------
    def _check_signature(self, root) -> None:
        import base64

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from lxml import etree

        ids = [el.get("Id") for el in root.iter() if isinstance(el.tag, str) and el.get("Id") is not None]
        if len(ids) != len(set(ids)):
            raise Rejected("attributs Id dupliqués")
        signatures = root.findall(f".//{{{DS}}}Signature")
        if mutants.active("wl-wrapping"):  # verifies the element that carries the signature, wherever it is
            if not signatures:
                raise Rejected("liste non signée")
            root = etree.fromstring(etree.tostring(signatures[0].getparent()), self._parser())
            sig = root.find(f"{{{DS}}}Signature")
        else:
            sig = root.find(f"{{{DS}}}Signature")
            if sig is None or len(signatures) != 1:
                raise Rejected("liste non signée" if not signatures else "signature absente de la racine ou multiple")
        certs = [x509.load_der_x509_certificate(base64.b64decode("".join(e.itertext())))
                 for e in sig.iterfind(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")]
        if not certs:
            raise Rejected("aucun certificat dans KeyInfo")
        if mutants.active("wl-sigprops-unchecked"):
            leaf = certs[0]
        else:
            leaf = self._signing_certificate(sig, certs)
        self._check_certificate(leaf, certs, sig)
        if mutants.active("wl-sigprops-unchecked"):
            _verify_document_only(root, sig, leaf)
            return
        try:
            import xmlsec

            xmlsec.tree.add_ids(root, ["Id"])
            ctx = xmlsec.SignatureContext()
            ctx.key = xmlsec.Key.from_memory(leaf.public_bytes(serialization.Encoding.PEM), xmlsec.KeyFormat.CERT_PEM)
            ctx.verify(sig)
        except Exception as exc:  # noqa: BLE001 - xmlsec.Error and malformed structures alike
            raise Rejected(f"signature XMLDSig invalide : {exc}") from None

    def _signing_certificate(self, sig, certs):
        """XAdES: the signed properties are referenced by SignedInfo and name the signing certificate."""
        import base64

        from cryptography.hazmat.primitives import serialization

        props = sig.find(f"{{{DS}}}Object/{{{XADES}}}QualifyingProperties/{{{XADES}}}SignedProperties")
        if props is None or not props.get("Id"):
            raise Rejected("SignedProperties XAdES absentes")
        if props.getparent().get("Target") != f"#{sig.get('Id')}":
            raise Rejected("QualifyingProperties ne ciblent pas cette signature")
        refs = sig.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        if not any(r.get("Type") == SIGNED_PROPERTIES_TYPE and r.get("URI") == f"#{props.get('Id')}" for r in refs):
            raise Rejected("SignedProperties non couvertes par la signature")
        cert_el = props.find(f"{{{XADES}}}SignedSignatureProperties/{{{XADES}}}SigningCertificateV2/{{{XADES}}}Cert")
        if cert_el is None:
            raise Rejected("SigningCertificateV2 absent")
        method = cert_el.find(f"{{{XADES}}}CertDigest/{{{DS}}}DigestMethod")
        value = cert_el.find(f"{{{XADES}}}CertDigest/{{{DS}}}DigestValue")
        algo = {"http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
                "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256}.get(method.get("Algorithm") if method is not None else "")
        if algo is None or value is None:
            raise Rejected("CertDigest absent ou algorithme non admis")
        expected = base64.b64decode(_text(value))
        for cert in certs:
            if algo(cert.public_bytes(serialization.Encoding.DER)).digest() == expected:
                signing_time = props.find(f"{{{XADES}}}SignedSignatureProperties/{{{XADES}}}SigningTime")
                try:
                    st = datetime.fromisoformat(_text(signing_time).replace("Z", "+00:00"))
                except (ValueError, AttributeError):
                    raise Rejected("SigningTime absent ou illisible") from None
                if mutants.active("cov-wl-signer-expiry-grace"):
                    st = _skewed(cert, st)
                if not mutants.active("wl-expiry-ignored") and not cert.not_valid_before_utc <= st <= cert.not_valid_after_utc:
                    raise Rejected("SigningTime hors de la validité du certificat signataire")
                return cert
        raise Rejected("certificat signataire introuvable (SigningCertificateV2)")

    def _check_certificate(self, leaf, presented, sig) -> None:
        from cryptography.x509.oid import NameOID

        now = _skewed(leaf, datetime.now(UTC)) if mutants.active("cov-wl-signer-expiry-grace") else datetime.now(UTC)
        if not mutants.active("wl-chain-unchecked"):
            self._verify_path(leaf, presented, self.anchors, now, ignore_time=mutants.active("wl-expiry-ignored"))
        elif not mutants.active("wl-expiry-ignored") and not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise Rejected("certificat signataire hors validité")
        if not mutants.active("wl-signer-dn-unchecked"):
            cn = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            ou = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
            if mutants.active("cov-wl-signer-cn-prefix"):  # mutant: case-insensitive prefix match of the CN
                cn = [self.expected_cn] if cn and cn[0].casefold().startswith(self.expected_cn.casefold()) else cn
            if cn != [self.expected_cn] or self.expected_ou not in ou:
                raise Rejected(f"signataire inattendu : {leaf.subject.rfc4514_string()}")
        if not mutants.active("wl-revocation-ignored"):
            try:
                self._check_not_revoked(leaf, [*presented, *self.anchors])
            except RevocationUnknown:
                if not mutants.active("wl-crl-soft-fail"):
                    raise

    @staticmethod
    def _verify_path(leaf, presented, anchors, now, *, ignore_time: bool) -> None:
        from cryptography.x509 import verification as v

        roots = [c for c in anchors if c.issuer == c.subject]
        intermediates = [c for c in [*presented, *anchors] if c.issuer != c.subject and c != leaf]
        when = now if not ignore_time else min(max(now, leaf.not_valid_before_utc + timedelta(seconds=1)),
                                                   leaf.not_valid_after_utc - timedelta(seconds=1))
        verifier = (v.PolicyBuilder().store(v.Store(roots)).time(when)
                    .extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=v.ExtensionPolicy.permit_all())
                    .build_client_verifier())
        try:
            verifier.verify(leaf, intermediates)
        except v.VerificationError as exc:
            raise Rejected(f"certificat « {leaf.subject.rfc4514_string()} » non validé : {exc}") from None

    def _crl_for(self, cert):
        """The CRL at the certificate's distribution point (HTTP), cached until nextUpdate."""
        import httpx
        from cryptography import x509

        try:
            points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            urls = [n.value for p in points for n in (p.full_name or []) if n.value.startswith("http://")]
        except x509.ExtensionNotFound:
            urls = []
        if not urls:
            raise Rejected("aucun point de distribution de CRL")
        now = datetime.now(UTC)
        with self._crl_lock:
            crl = self._crls.get(urls[0])
            if crl is not None and (crl.next_update_utc is None or crl.next_update_utc >= now):
                return crl
        try:
            resp = self._crl_http.get(urls[0])
            resp.raise_for_status()
            crl = x509.load_der_x509_crl(resp.content)
        except (httpx.HTTPError, ValueError) as exc:
            raise RevocationUnknown(f"CRL injoignable ou illisible ({urls[0]}) : révocation inconnue ({exc})") from None
        with self._crl_lock:
            self._crls[urls[0]] = crl
        return crl

    def _check_not_revoked(self, cert, pool, *, check_crl_signature: bool = True) -> None:
        crl = self._crl_for(cert)
        if check_crl_signature:
            issuer = next((c for c in pool if c.subject == cert.issuer and crl.issuer == c.subject
                           and crl.is_signature_valid(c.public_key())), None)
            if issuer is None:
                raise RevocationUnknown("CRL non signée par l'émetteur du certificat : révocation inconnue")
            if crl.next_update_utc is not None and crl.next_update_utc < datetime.now(UTC):
                raise RevocationUnknown("CRL périmée : révocation inconnue")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise Rejected(f"certificat « {cert.subject.rfc4514_string()} » révoqué")

    # -- peers -------------------------------------------------------------------------------------
    def allows_client(self, der: bytes) -> tuple[bool, str]:
        """Source side: may this peer (its TLS client certificate) be served? (allowed, reason)."""
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        state = self.state
        if state is None:
            return False, "aucune liste blanche valide en vigueur"
        any_ca = mutants.active("mtls-any-ca")
        try:
            if not any_ca:
                self._verify_path(cert, [], self.client_anchors, datetime.now(UTC),
                                  ignore_time=mutants.active("mtls-expiry-ignored"))
            cached = mutants.active("cov-mtls-revocation-cached") and cert.fingerprint(_sha256()) in self._authorised
            if not mutants.active("mtls-revocation-ignored") and not cached:
                self._check_not_revoked(cert, self.client_anchors, check_crl_signature=not any_ca)
                if mutants.active("cov-mtls-revocation-cached"):  # mutant: "not revoked" remembered per certificate
                    self._authorised.add(cert.fingerprint(_sha256()))
        except Rejected as exc:
            return False, str(exc)
        key = dn_key(cert.subject)
        if mutants.active("mtls-dn-unchecked"):
            return True, "DN non comparé (mutant)"
        if mutants.active("mtls-cn-only"):
            ok = _cn_of(key) in state.cns
        elif mutants.active("cov-mtls-dn-subset"):  # LDAP-like match: every listed attribute present, extras ignored
            ok = any(set(dn) <= set(key) for dn in state.dns)
        elif mutants.active("mtls-stale-authorizations"):
            ok = key in state.dns or key in self._authorised
            if ok:
                self._authorised.add(key)
        else:
            ok = key in state.dns
        return (ok, "DN listé" if ok else f"DN « {cert.subject.rfc4514_string()} » absent de la liste blanche")

    def allows_host(self, fqdn: str) -> bool:
        """Conso side: may this DRIMbox call host `fqdn` (a `db` of the valid list)?"""
        state = self.state
        if mutants.active("conso-any-host"):
            return True
        if mutants.active("cov-conso-host-same-domain") and state is not None:  # mutant: *.<registry domain> trusted
            parent = fqdn.lower().rstrip(".").partition(".")[2]
            return any(h.partition(".")[2] == parent for h in state.hosts)
        if mutants.active("cov2-conso-whitelist-snapshot") and state is not None:
            # mutant: the Conso's routing table is copied from the list in force at its first consultation
            if self._conso_hosts is None:
                self._conso_hosts = set(state.hosts)
            return fqdn.lower().rstrip(".") in self._conso_hosts
        return state is not None and fqdn.lower().rstrip(".") in state.hosts


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


CLOCK_SKEW = timedelta(days=7)


def _skewed(cert, when: datetime) -> datetime:
    """Mutant cov-wl-signer-expiry-grace: a week of "clock skew" tolerated around the validity period."""
    if cert.not_valid_after_utc < when <= cert.not_valid_after_utc + CLOCK_SKEW:
        return cert.not_valid_after_utc - timedelta(seconds=1)
    if cert.not_valid_before_utc - CLOCK_SKEW <= when < cert.not_valid_before_utc:
        return cert.not_valid_before_utc + timedelta(seconds=1)
    return when


def _text(el) -> str:
    """Full text of an element, comments excluded (a comment must not cut a value in two)."""
    return "".join(el.itertext()).strip() if el is not None else ""


def _verify_document_only(root, sig, leaf) -> None:
    """Mutant wl-sigprops-unchecked: SignatureValue and the document reference only, XAdES ignored."""
    import base64
    import copy

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from lxml import etree

    signed_info = sig.find(f"{{{DS}}}SignedInfo")
    try:
        leaf.public_key().verify(base64.b64decode(_text(sig.find(f"{{{DS}}}SignatureValue"))),
                                 etree.tostring(signed_info, method="c14n", exclusive=True), padding.PKCS1v15(),
                                 hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise Rejected(f"valeur de signature invalide ({type(exc).__name__})") from None
    doc = copy.deepcopy(root)
    _detach(doc.find(f"{{{DS}}}Signature"))
    digest = hashlib.sha256(etree.tostring(doc.getroottree(), method="c14n", exclusive=True, with_comments=False)).digest()
    ref = next(r for r in signed_info.findall(f"{{{DS}}}Reference") if r.get("URI") == "")
    if base64.b64decode(_text(ref.find(f"{{{DS}}}DigestValue"))) != digest:
        raise Rejected("empreinte du document différente")


def _detach(el) -> None:
    """Remove an element, keeping the text that followed it: what the enveloped-signature transform leaves."""
    parent, prev = el.getparent(), el.getprevious()
    if el.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


class _NetworkResolver:
    """Mutant wl-xxe: resolves external entities over HTTP like a permissive XML stack would."""

    def __new__(cls):
        from lxml import etree

        class Resolver(etree.Resolver):
            def resolve(self, url, pubid, context):
                import httpx

                if url and url.startswith(("http://", "https://")):
                    try:
                        return self.resolve_string(httpx.get(url, timeout=1.0, verify=False, trust_env=False).text,
                                                   context)
                    except httpx.HTTPError:
                        return self.resolve_string("", context)
                return None

        return Resolver()
