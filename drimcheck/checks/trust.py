"""Trust-space checks of what the DUT presents on its FQDNs: viN certificate, TLS versions, lifetimes, ACME hygiene.

Seed §2.5 (market OV certificate on viN), §2.6 and the CGI it quotes (renewal, purge of ACME files),
SECU-IG (TLS >= 1.2). They complement checks/tls.py (dbN certificate) and never talk to the network.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from drimcheck.checks import check
from drimcheck.checks.tls import _chain, _dns_names, build_path, hostname_matches
from drimcheck.net import Exchange, TlsInfo, TlsVersionProbe
from drimcheck.verdicts import Finding, errored, failed, passed, skipped, warned

EXPIRY_WARNING = timedelta(days=30)
OV_EV_POLICIES = {"2.23.140.1.2.2": "OV", "2.23.140.1.1": "EV"}  # CA/Browser Forum policy identifiers
LEGACY = ("TLSv1", "TLSv1_1")


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@check("CRT-04")
def market_certificate(tls: TlsInfo | None, fqdn: str, market_anchors: list[x509.Certificate],
                       igc_anchors: list[x509.Certificate]) -> list[Finding]:
    """viN presents a market SSL certificate, OV or better, for this FQDN (browsers must trust it)."""
    chain = _chain(tls)
    if not chain:
        return [failed("CRT-04", f"{fqdn} : aucun certificat présenté (HTTPS non servi ou poignée de main échouée)")]
    leaf = chain[0]
    problems = []
    path, why = build_path(leaf, chain[1:], market_anchors)
    if path is None:
        igc_path, _ = build_path(leaf, chain[1:], igc_anchors)
        problems.append("certificat de l'IGC-Santé, que les navigateurs ne reconnaissent pas" if igc_path is not None
                        else f"ne chaîne vers aucune AC du marché reconnue ({why})")
    try:
        policies = {p.policy_identifier.dotted_string
                    for p in leaf.extensions.get_extension_for_class(x509.CertificatePolicies).value}
    except x509.ExtensionNotFound:
        policies = set()
    level = next((OV_EV_POLICIES[p] for p in policies if p in OV_EV_POLICIES), None)
    if level is None:
        problems.append("pas de politique OV ni EV (2.23.140.1.2.2 / 2.23.140.1.1) : validation d'organisation absente")
    names = _dns_names(leaf)
    if not any(hostname_matches(n, fqdn) for n in names):
        problems.append(f"{fqdn} absent du subjectAltName ({', '.join(names) or 'aucun nom DNS'})")
    try:
        server = ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        server = True  # no EKU: any usage
    if not server:
        problems.append("pas d'usage serverAuth")
    details = {"presented": [_name(c) for c in chain], "policies": sorted(policies)}
    if problems or path is None:  # no path always comes with its problem
        return [failed("CRT-04", f"{fqdn} : « {_name(leaf)} » : {' ; '.join(problems)}", details=details)]
    return [passed("CRT-04", f"{fqdn} : certificat {level} du marché « {_name(leaf)} » émis par « {_name(path[-1])} »",
                   details=details)]


@check("CRT-05")
def legacy_tls_refused(probes: list[TlsVersionProbe], control: Exchange | None, fqdn: str) -> list[Finding]:
    """TLS 1.0 and 1.1 handshakes are refused; the same endpoint answers in TLS >= 1.2 (control)."""
    evidence = [p.evidence for p in probes if p.evidence] + ([control.evidence] if control and control.evidence else [])
    accepted = [p for p in probes if p.outcome == "accepted"]
    if accepted:
        return [failed("CRT-05", f"{fqdn} : {', '.join(p.negotiated or p.offered for p in accepted)} accepté "
                       f"({accepted[0].detail})", evidence=evidence)]
    if control is None or control.tls is None or not control.tls.version:
        return [errored("CRT-05", f"{fqdn} : injoignable en TLS 1.2+ ({control.error if control else 'aucune sonde'}) : "
                        "le refus des anciennes versions ne prouve rien", evidence=evidence)]
    unable = [p for p in probes if p.outcome in ("client-unable", "unreachable")]
    if unable:
        return [errored("CRT-05", f"{fqdn} : {unable[0].offered} non testable depuis ce banc ({unable[0].detail})",
                        evidence=evidence)]
    return [passed("CRT-05", f"{fqdn} : {' et '.join(p.offered for p in probes)} refusés "
                   f"({'; '.join(p.detail for p in probes)}) ; {control.tls.version} accepté", evidence=evidence)]


@check("CRT-03")
def presented_chain_valid(tls: TlsInfo | None, fqdn: str, now: datetime | None = None) -> list[Finding]:
    """Every certificate presented on the FQDN (leaf and intermediates) is valid; under 30 days left is a warning."""
    chain = _chain(tls)
    if not chain:
        return [skipped("CRT-03", f"{fqdn} : aucun certificat présenté")]
    now = now or datetime.now(UTC)
    expired = [c for c in chain if now > c.not_valid_after_utc]
    future = [c for c in chain if now < c.not_valid_before_utc]
    details = {"chain": [{"subject": _name(c), "not_before": c.not_valid_before_utc.isoformat(),
                          "not_after": c.not_valid_after_utc.isoformat()} for c in chain], "checked_at": now.isoformat()}
    if expired:
        return [failed("CRT-03", f"{fqdn} : « {_name(expired[0])} » expiré depuis le "
                       f"{expired[0].not_valid_after_utc:%Y-%m-%d}", details=details)]
    if future:
        return [failed("CRT-03", f"{fqdn} : « {_name(future[0])} » pas encore valide (à partir du "
                       f"{future[0].not_valid_before_utc:%Y-%m-%d})", details=details)]
    soonest = min(chain, key=lambda c: c.not_valid_after_utc)
    left = soonest.not_valid_after_utc - now
    if left < EXPIRY_WARNING:
        return [warned("CRT-03", f"{fqdn} : « {_name(soonest)} » expire dans {left.days} jour(s) "
                       f"({soonest.not_valid_after_utc:%Y-%m-%d})", details=details)]
    return [passed("CRT-03", f"{fqdn} : {len(chain)} certificat(s) présenté(s), le premier à expirer le "
                   f"{soonest.not_valid_after_utc:%Y-%m-%d} ({left.days} jours)", details=details)]


_HREF = re.compile(r"""href\s*=\s*["']?([^"' >]+)""", re.IGNORECASE)


def listed_challenge_files(index: Exchange | None) -> list[str]:
    """File names a directory listing of /.well-known/acme-challenge/ exposes (none when not listed)."""
    if index is None or index.status != 200 or not index.response_body:
        return []
    names = []
    for href in _HREF.findall(index.text()):
        name = href.rstrip("/").rsplit("/", 1)[-1]
        if name and name not in ("..", ".") and not href.startswith(("?", "#", "http")) and re.fullmatch(r"[A-Za-z0-9_-]+", name):
            names.append(name)
    return names


#: look-alikes of the challenge directory a lenient web server also answers (issue 9): no trailing slash, upper case
ACME_DIR = "/.well-known/acme-challenge/"
ACME_LOOKALIKES = ("/.well-known/acme-challenge", "/.WELL-KNOWN/ACME-CHALLENGE/")


@check("CLR-02")
def no_stale_acme_challenge(index: Exchange | None, files: list[Exchange], fqdn: str,
                            variants: list[Exchange] | None = None) -> list[Finding]:
    """No old ACME HTTP-01 challenge file answers under /.well-known/acme-challenge/ of viN (no listing either), nor
    under its look-alike paths (`variants`: the directory without its trailing slash, in upper case)."""
    variants = [v for v in (variants or []) if v is not None]
    evidence = [e.evidence for e in [index, *variants, *files] if e is not None and e.evidence]
    if index is None:
        return [skipped("CLR-02", f"{fqdn} : aucune adresse HTTP déclarée dans [network], rien à sonder")]
    served = [e for e in files if e.status == 200 and e.response_body]
    if served:
        return [failed("CLR-02", f"{fqdn} : {len(served)} fichier(s) de challenge ACME toujours servi(s) en clair "
                       f"({served[0].url}) : anciens fichiers non purgés", evidence=evidence)]
    for probe in (index, *variants):
        listed = listed_challenge_files(probe)
        if listed:
            return [failed("CLR-02", f"{fqdn} : le répertoire des challenges ACME est listé en clair à {probe.url} "
                           f"({', '.join(listed[:3])})", evidence=evidence)]
    how = index.error or f"HTTP {index.status}"
    also = f" ; {len(variants)} chemin(s) voisin(s) sondé(s)" if variants else ""
    return [passed("CLR-02", f"{fqdn} : aucun fichier de challenge ACME exposé (répertoire : {how}{also})",
                   evidence=evidence)]
