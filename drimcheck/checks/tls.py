"""Checks of the certificates and transport the DUT presents on its fixed FQDNs (seed §2.5–2.6, FAQ C17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from drimcheck.checks import check
from drimcheck.net import Exchange, TlsInfo
from drimcheck.verdicts import Finding, failed, passed, skipped, warned

EXPIRY_WARNING = timedelta(days=30)
#: what `Certificate.verify_directly_issued_by` raises for a certificate it cannot verify (DUT-supplied: a finding,
#: never a crash): a bad signature, an issuer name or key type that does not fit, an algorithm it does not support,
#: an OpenSSL failure on a malformed key
SIGNATURE_ERRORS = (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, InternalError)


def _chain(tls: TlsInfo | None) -> list[x509.Certificate]:
    out = []
    for der in (tls.chain_der if tls else []):
        try:
            out.append(x509.load_der_x509_certificate(der))
        except ValueError:
            pass
    return out


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def build_path(leaf: x509.Certificate, presented: list[x509.Certificate],
               anchors: list[x509.Certificate]) -> tuple[list[x509.Certificate] | None, str]:
    """Chain the leaf to a trust anchor through presented CAs: issuer names and signatures, CA constraints.

    Validity dates are judged separately (CRT-03), so one defect fails one requirement.
    """
    path = [leaf]
    current = leaf
    for _ in range(8):
        for anchor in anchors:
            if current == anchor:
                return path, "ok"
            if current.issuer == anchor.subject:
                try:
                    current.verify_directly_issued_by(anchor)
                except SIGNATURE_ERRORS as exc:
                    return None, f"signature de « {_name(current)} » invalide pour l'ancre « {_name(anchor)} » ({type(exc).__name__})"
                return path + [anchor], "ok"
        candidates = [c for c in presented if c.subject == current.issuer and c != current]
        if not candidates:
            return None, f"émetteur « {current.issuer.rfc4514_string()} » ni présenté ni ancre de confiance"
        issuer = candidates[0]
        try:
            issuer_bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return None, f"l'AC intermédiaire « {_name(issuer)} » n'a pas de basicConstraints"
        if not issuer_bc.ca:
            return None, f"« {_name(issuer)} » n'est pas une AC (basicConstraints CA:FALSE)"
        try:
            current.verify_directly_issued_by(issuer)
        except SIGNATURE_ERRORS as exc:
            return None, f"signature de « {_name(current)} » invalide ({type(exc).__name__})"
        path.append(issuer)
        current = issuer
    return None, "chaîne trop longue"


@check("CRT-01")
def chains_to_igc_sante(tls: TlsInfo | None, fqdn: str, anchors: list[x509.Certificate]) -> list[Finding]:
    """The dbN FQDN presents a server certificate (EKU serverAuth) that chains to an IGC-Santé trust anchor."""
    chain = _chain(tls)
    if not chain:
        return [failed("CRT-01", f"{fqdn} : aucun certificat présenté (HTTPS non servi ou poignée de main TLS échouée)")]
    leaf = chain[0]
    path, why = build_path(leaf, chain[1:], anchors)
    if path is None:
        return [failed("CRT-01", f"{fqdn} : le certificat « {_name(leaf)} » ne chaîne pas vers la racine IGC-Santé : {why}",
                       details={"presented": [_name(c) for c in chain]})]
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        server = ExtendedKeyUsageOID.SERVER_AUTH in eku
    except x509.ExtensionNotFound:
        server = False
    if not server:
        return [failed("CRT-01", f"{fqdn} : le certificat « {_name(leaf)} » n'a pas l'usage serverAuth d'un SERV_SSL")]
    return [passed("CRT-01", f"{fqdn} : « {_name(leaf)} » chaîne vers « {_name(path[-1])} » ({len(path)} certificats)",
                   details={"path": [_name(c) for c in path], "tls_version": tls.version if tls else None})]


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def hostname_matches(pattern: str, fqdn: str) -> bool:
    """RFC 6125 matching: exact, or a wildcard standing for exactly one left-most label."""
    pattern, fqdn = pattern.lower().rstrip("."), fqdn.lower().rstrip(".")
    if pattern == fqdn:
        return True
    if pattern.startswith("*.") and "." in fqdn:
        return fqdn.split(".", 1)[1] == pattern[2:]
    return False


@check("CRT-02")
def san_names_fqdn(tls: TlsInfo | None, fqdn: str) -> list[Finding]:
    """The certificate presented on the FQDN carries that FQDN in its subjectAltName."""
    chain = _chain(tls)
    if not chain:
        return [skipped("CRT-02", f"{fqdn} : aucun certificat présenté (voir CRT-01)")]
    names = _dns_names(chain[0])
    if any(hostname_matches(n, fqdn) for n in names):
        return [passed("CRT-02", f"{fqdn} figure dans le subjectAltName ({', '.join(names)})")]
    return [failed("CRT-02", f"{fqdn} absent du subjectAltName du certificat présenté "
                   f"({', '.join(names) or 'aucun nom DNS'}) : la vérification du nom d'hôte échoue")]


@check("CRT-03")
def currently_valid(tls: TlsInfo | None, fqdn: str, now: datetime | None = None) -> list[Finding]:
    """The certificate presented is within its validity period; less than 30 days left is a warning."""
    chain = _chain(tls)
    if not chain:
        return [skipped("CRT-03", f"{fqdn} : aucun certificat présenté (voir CRT-01)")]
    now = now or datetime.now(UTC)
    leaf = chain[0]
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    details = {"not_before": start.isoformat(), "not_after": end.isoformat(), "checked_at": now.isoformat()}
    if now < start:
        return [failed("CRT-03", f"{fqdn} : certificat pas encore valide (à partir du {start:%Y-%m-%d %H:%M} UTC)", details=details)]
    if now > end:
        return [failed("CRT-03", f"{fqdn} : certificat expiré depuis le {end:%Y-%m-%d %H:%M} UTC", details=details)]
    left = end - now
    if left < EXPIRY_WARNING:
        return [warned("CRT-03", f"{fqdn} : le certificat expire dans {left.days} jour(s) ({end:%Y-%m-%d})", details=details)]
    return [passed("CRT-03", f"{fqdn} : certificat valide jusqu'au {end:%Y-%m-%d} ({left.days} jours)", details=details)]


@check("CLR-01")
def nothing_served_in_clear(exchange: Exchange | None, fqdn: str) -> list[Finding]:
    """Plain HTTP on the FQDN serves no application content: refused, redirected to HTTPS, or 403/404."""
    if exchange is None:
        return [skipped("CLR-01", f"{fqdn} : aucune adresse HTTP déclarée dans [network], rien à sonder")]
    ev = [exchange.evidence] if exchange.evidence else []
    if not exchange.ok:
        return [passed("CLR-01", f"{exchange.url} : aucun service en clair ({exchange.error})", evidence=ev)]
    status = exchange.status or 0
    location = exchange.header("location") or ""
    if 300 <= status < 400 and location.lower().startswith(f"https://{fqdn.lower()}"):
        return [passed("CLR-01", f"{exchange.url} : redirection {status} vers HTTPS", evidence=ev)]
    if status in (400, 401, 403, 404, 405, 421):
        return [passed("CLR-01", f"{exchange.url} : HTTP {status}, aucun contenu applicatif en clair", evidence=ev)]
    return [failed("CLR-01", f"{exchange.url} : HTTP {status} en clair ({len(exchange.response_body)} octets servis ; "
                   "seuls ACME HTTP-01, CRL, certificats d'AC et OCSP sont autorisés en clair)", evidence=ev)]
