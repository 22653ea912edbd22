"""Peer DRIMbox in the Conso role: calls the DUT Source's WADO-RS over mTLS with a chosen identity.

The identities are IGC-Santé-like SERV_SSL certificates of the test PKI (the certificate a DRIMbox
presents to its peers), one per trust situation: listed in the whitelist, withdrawn from it, never
listed, added by a later list, an usurper (listed CN, another organisation), and the defective
family of MTLS-01 (expired, not yet valid, foreign CA, revoked) sharing the listed peer's DN so that
the defect under test is the only one.

Requests are sent with the harness client (every exchange recorded as evidence); the simulator
judges nothing. What a Source also requires (PSC Bearer token, KOS-SOPInstanceUID of the study) comes
from `header_providers` (callables ``(identity, study_uid) -> headers``, e.g. :class:`SourceAccess`);
a request can override or drop (value None) any header.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from drimcheck import limits
from drimcheck.net import DutClient, Exchange
from drimcheck.wado import ANS_SAMPLE_ACCEPT
from fixtures.pki import TestPKI
from fixtures.whitelist import Domain

LISTED = "db901.test.mesimagesmedicales.fr"
WITHDRAWN = "db902.test.mesimagesmedicales.fr"
UNLISTED = "db903.test.mesimagesmedicales.fr"
ADDED = "db904.test.mesimagesmedicales.fr"
USURPER_OU = "300000009990666"
USURPER_ORGANISATION = "DRIMCHECK OPERATEUR USURPATEUR"
CLIENT_DEFECTS = ("expired", "not_yet_valid", "wrong_ca", "revoked")

# The Accept list of ANS's WADO-RS validator samples (../ansdata/wado-rs/requete-wado-rs-serie.txt).
ANS_ACCEPT = ANS_SAMPLE_ACCEPT


@dataclass(frozen=True)
class Identity:
    """A peer DRIMbox identity: its FQDN, the certificate it presents (None: no client certificate)."""

    key: str
    fqdn: str
    issued: Any  # fixtures.pki.Issued | None
    description: str  # French, for reports

    @property
    def dn(self) -> str | None:
        return self.issued.subject_dn if self.issued is not None else None


class PeerIdentities:
    """Every peer identity of a campaign, issued lazily from the run's PKI (revoked ones by preissue())."""

    def __init__(self, pki: TestPKI):
        self.pki = pki
        self._lock = threading.RLock()
        self._issued: dict[str, Identity] = {}

    def preissue(self) -> None:
        """What must exist before the DUT starts: the nominal list's peers and the revoked certificate (CRL)."""
        for key in ("listed", "withdrawn", "revoked"):
            self.get(key)

    @cached_property
    def _table(self) -> dict[str, Callable[[], Identity]]:
        pki = self.pki
        return {
            "listed": lambda: Identity("listed", LISTED, pki.serv_ssl(LISTED), f"DRIMbox listée {LISTED}"),
            "withdrawn": lambda: Identity("withdrawn", WITHDRAWN, pki.serv_ssl(WITHDRAWN),
                                          f"DRIMbox {WITHDRAWN} (retirée par la liste « retrait »)"),
            "unlisted": lambda: Identity("unlisted", UNLISTED, pki.serv_ssl(UNLISTED),
                                         f"DRIMbox {UNLISTED} absente de la liste"),
            "added": lambda: Identity("added", ADDED, pki.serv_ssl(ADDED), f"DRIMbox {ADDED} ajoutée par une liste"),
            "usurper": lambda: Identity("usurper", LISTED, pki.serv_ssl(LISTED, ou=USURPER_OU,
                                                                       organisation=USURPER_ORGANISATION),
                                        f"certificat au CN listé {LISTED} mais d'une autre organisation (DN non listé)"),
            "no_certificate": lambda: Identity("no_certificate", LISTED, None, "aucun certificat client"),
            # look-alikes of the listed DN (issue 9): equal only for a lenient comparison
            "lookalike_prefix": lambda: Identity("lookalike_prefix", LISTED, pki.serv_ssl(f"x{LISTED}"),
                                                 f"certificat au CN x{LISTED} (CN listé précédé d'un préfixe)"),
            "lookalike_dot": lambda: Identity("lookalike_dot", LISTED, pki.serv_ssl(f"{LISTED}."),
                                              f"certificat au CN {LISTED}. (CN listé suivi d'un point final)"),
            "lookalike_extra_rdn": lambda: Identity("lookalike_extra_rdn", LISTED, _with_locality(pki, LISTED),
                                                    "certificat au DN listé augmenté d'un attribut L=Paris"),
            # time and state (issue 9): valid when first used, revoked by the scenario afterwards (MTLS-01)
            "revoked_after_use": lambda: Identity("revoked_after_use", LISTED, _listed_dn_twin(pki, LISTED),
                                                  "certificat client au DN listé, révoqué après un premier accès "
                                                  "accepté"),
            **{f"{d}": (lambda d=d: Identity(d, LISTED, pki.negative(d, LISTED), _DEFECTS_FR[d]))
               for d in CLIENT_DEFECTS},
        }

    def get(self, key: str) -> Identity:
        with self._lock:
            if key not in self._issued:
                if key not in self._table:
                    raise KeyError(f"unknown peer identity {key!r} (known: {', '.join(self._table)})")
                self._issued[key] = self._table[key]()
            return self._issued[key]

    def keys(self) -> list[str]:
        return list(self._table)

    def domain(self, key: str, identifiant: str, *, dn: str | None = None) -> Domain:
        """The whitelist entry of a peer, as ANS would publish it."""
        ident = self.get(key)
        n = ident.fqdn.split(".", 1)[0][2:]
        return Domain(identifiant=identifiant, db=ident.fqdn, vi=f"vi{n}.test.mesimagesmedicales.fr",
                      denomination=f"DRIMCHECK PAIR {key.upper()}", dn=dn or ident.dn,
                      support_contact=f"support-{key}@drimcheck.test", date_maj="2026-01-15T10:00:00Z")


def _with_locality(pki: TestPKI, fqdn: str) -> Any:
    """A SERV_SSL whose subject is the listed peer's DN plus one attribute (L=Paris)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from fixtures.pki import DEFAULT_ORGANISATION, DEFAULT_STATE, DEFAULT_STRUCTURE_ID, org_name

    base = list(org_name(fqdn, DEFAULT_STRUCTURE_ID, DEFAULT_ORGANISATION, DEFAULT_STATE))
    subject = x509.Name([*base[:2], x509.NameAttribute(NameOID.LOCALITY_NAME, "Paris"), *base[2:]])
    return pki.issue(f"serv_ssl:{subject.rfc4514_string()}", subject=subject, profile="serv_ssl", san=[fqdn])


def _listed_dn_twin(pki: TestPKI, fqdn: str) -> Any:
    """A second, valid SERV_SSL with exactly the listed peer's DN (another serial and key): revoking it leaves the
    listed peer's own certificate untouched."""
    from fixtures.pki import DEFAULT_ORGANISATION, DEFAULT_STATE, DEFAULT_STRUCTURE_ID, org_name

    subject = org_name(fqdn, DEFAULT_STRUCTURE_ID, DEFAULT_ORGANISATION, DEFAULT_STATE)
    return pki.issue(f"serv_ssl-revoque-apres-usage:{fqdn}", subject=subject, profile="serv_ssl", san=[fqdn])


_DEFECTS_FR = {
    "expired": "certificat client expiré (DN listé)",
    "not_yet_valid": "certificat client pas encore valide (DN listé)",
    "wrong_ca": "certificat client d'une autre AC imitant l'IGC-Santé (DN listé)",
    "revoked": "certificat client révoqué, publié dans la CRL (DN listé)",
}


class SourceAccess:
    """Header provider: a PSC access token (issued by drimcheck's PSC simulator, renewed before it expires) and
    the SOP Instance UID of the KOS the DUT Source published for each study (learnt by the caller)."""

    def __init__(self, psc: Any, *, lifetime_s: int = 600):
        self.psc = psc
        self.lifetime_s = lifetime_s
        self._kos: dict[str, str] = {}
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def learn(self, study_uid: str, kos_uid: str) -> None:
        with self._lock:
            self._kos[study_uid] = kos_uid

    def kos_uid(self, study_uid: str) -> str | None:
        with self._lock:
            return self._kos.get(study_uid)

    def token(self) -> str:
        import time

        with self._lock:
            if self._token is None or self._token[1] - time.time() < 60:
                issued = self.psc.issue_token(lifetime_s=self.lifetime_s)
                self._token = (issued.access_token, time.time() + self.lifetime_s)
            return self._token[0]

    def __call__(self, identity: Identity, study_uid: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        kos = self.kos_uid(study_uid)
        if kos:
            headers["KOS-SOPInstanceUID"] = kos
        return headers


class PeerConso:
    """Sends WADO-RS retrievals to the DUT Source as a peer DRIMbox (recorded by the harness client)."""

    def __init__(self, client: DutClient, identities: PeerIdentities, *, wado_root: str = "/api/source",
                 header_providers: list[Callable[[Identity, str], dict[str, str]]] | None = None):
        self.client = client
        self.identities = identities
        self.wado_root = "/" + wado_root.strip("/") if wado_root.strip("/") else ""
        self.header_providers = list(header_providers or [])

    def series_url(self, db_fqdn: str, study_uid: str, series_uid: str) -> str:
        return f"https://{db_fqdn}{self.wado_root}/studies/{study_uid}/series/{series_uid}"

    def fetch_series(self, db_fqdn: str, study_uid: str, series_uid: str, *, identity: str | Identity,
                     label: str | None = None, headers: dict[str, str | None] | None = None,
                     instance_uid: str | None = None) -> Exchange:
        """GET the series (or one of its instances) with the ANS Accept list, the providers' headers, then
        `headers` (a None value removes that header)."""
        ident = identity if isinstance(identity, Identity) else self.identities.get(identity)
        sent: dict[str, str | None] = {"Accept": ANS_ACCEPT}
        for provider in self.header_providers:
            sent.update(provider(ident, study_uid))
        sent.update(headers or {})
        url = self.series_url(db_fqdn, study_uid, series_uid) + (f"/instances/{instance_uid}" if instance_uid else "")
        return self.client.get(url, headers={k: v for k, v in sent.items() if v is not None},
                               client_cert=ident.issued, label=label or f"pair-{ident.key}",
                               max_body=limits.MAX_RESPONSE_BODY)  # a series answer: images

