"""Checks of the whitelist lifecycle and of whitelist-based access control (seed §2.3, spec §2.4, §5.3).

They judge what was recorded: the requests the whitelist endpoint and the IGC publication point
received, the HealthCheck, and the WADO-RS exchanges of peer DRIMboxes with the DUT Source. What
counts as "served" is DICOM content actually returned: a refusal is anything else (TLS handshake
refused, connection cut, HTTP error), so a DUT is free in how it refuses, not in whether it does.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from drimcheck.checks import check
from drimcheck.net import Exchange
from drimcheck.verdicts import Finding, failed, passed, skipped
from drimcheck.verdicts import evidence_of as _evidence

WHITELIST_CHECK_NAME = re.compile(r"liste.?blanche|white.?list|allow.?list", re.IGNORECASE)
FAILURE_WORDS = re.compile(r"[ée]chec|erreur|error|fail|refus|rejet|invalid|ko\b|indisponible|unavailable|timeout|"
                           r"d[ée]lai", re.IGNORECASE)


# ------------------------------------------------------------------------------------------- served?


def _boundary(content_type: str) -> bytes | None:
    m = re.search(r'boundary="?([^";,\s]+)"?', content_type or "", re.IGNORECASE)
    return m.group(1).encode() if m else None


def dicom_parts(ex: Exchange | None) -> list[bytes]:
    """The DICOM objects (Part 10, 'DICM' at offset 128) a response carried, multipart/related or single.
    An answer cut short (cap exceeded, deadline) counts by the prefix received: serving too much is serving."""
    if ex is None or not ex.status or not 200 <= ex.status < 300 or not ex.response_body:
        return []
    body = ex.response_body
    boundary = _boundary(ex.header("content-type") or "")
    chunks = body.split(b"--" + boundary) if boundary else [body]
    out = []
    for chunk in chunks:
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        data = payload if sep and boundary else chunk
        if data.endswith(b"\r\n"):
            data = data[:-2]
        if len(data) > 132 and data[128:132] == b"DICM":
            out.append(data)
    return out


def served_instances(ex: Exchange | None) -> list[str]:
    """SOPInstanceUIDs of the DICOM objects served (unreadable objects count as '?')."""
    import pydicom

    uids = []
    for part in dicom_parts(ex):
        try:
            uids.append(str(pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True).SOPInstanceUID))
        except Exception:  # noqa: BLE001 - a served object is served even if we cannot read it
            uids.append("?")
    return uids


def _how_refused(ex: Exchange | None) -> str:
    if ex is None:
        return "aucune requête"
    if ex.error:
        return ex.error
    return f"HTTP {ex.status}" + (f" ({ex.text()[:120]})" if ex.response_body else "")


def _refused(requirement: str, ex: Exchange | None, who: str, context: str) -> list[Finding]:
    served = served_instances(ex)
    if served and ex is not None:  # something served: there was an exchange
        return [failed(requirement, f"{who} : {len(served)} objet(s) DICOM servi(s) {context}",
                       evidence=_evidence(ex), details={"served": served, "client_certificate": ex.client_certificate})]
    return [passed(requirement, f"{who} : refusée ({_how_refused(ex)}) {context}".rstrip(), evidence=_evidence(ex))]


# ------------------------------------------------------------------------------------------- WL-05 / MTLS-01


@check("WL-05")
def listed_peer_served(ex: Exchange | None, who: str, expected: Iterable[str]) -> list[Finding]:
    """A listed peer presenting its IGC-Santé certificate receives the whole series it asked for."""
    expected = set(expected)
    served = served_instances(ex)
    if not served:
        return [failed("WL-05", f"{who} : la série n'est pas servie ({_how_refused(ex)}) alors que son DN figure dans "
                       "la liste blanche en vigueur", evidence=_evidence(ex))]
    missing = expected - set(served)
    if missing:
        return [failed("WL-05", f"{who} : {len(missing)} instance(s) de la série manquent dans la réponse "
                       f"({len(served)} servie(s) sur {len(expected)})", evidence=_evidence(ex),
                       details={"missing": sorted(missing)})]
    return [passed("WL-05", f"{who} : série servie en mTLS ({len(served)} instance(s))", evidence=_evidence(ex))]


@check("WL-05")
def unlisted_peer_refused(ex: Exchange | None, who: str, context: str = "") -> list[Finding]:
    """A peer whose certificate DN is not listed (or that presents none) is served nothing."""
    return _refused("WL-05", ex, who, context)


@dataclass
class FollowedUrl:
    """One RetrieveURL of a KOS the DUT published, followed as a Conso would: by a listed peer (token, KOS UID)
    and by an unlisted one. `flaw` says why the URL was not followed (FQDN-01's business); `expected` are the
    instances the KOS references in that series and the PACS holds (what a correct Source serves)."""

    where: str  # e.g. "PACS-2, série 1.2.3"
    url: str
    expected: set[str]
    listed: Exchange | None = None
    unlisted: Exchange | None = None
    flaw: str | None = None


def refused_for_access(ex: Exchange | None) -> bool:
    """The peer was turned away by access control: TLS handshake or connection refused, or HTTP 403. A 401 is
    the PSC token's business (PSC-01), a 404/410/5xx the WADO-RS service's (WADO-01): not the whitelist's."""
    return ex is None or ex.status is None or ex.status == 403


@check("WL-05")
def retrieve_urls_followed(followed: list[FollowedUrl], listed_who: str, unlisted_who: str) -> list[Finding]:
    """Every RetrieveURL of every KOS (each dbN of a mutualised DRIMbox, not only the first): the listed peer is
    let through the access control, the unlisted one is served nothing — the whitelist is enforced on every dbN
    the KOS designate. What the listed peer then receives (complete series, WADO-RS status) is not judged here."""
    usable = [f for f in followed if f.flaw is None]
    if not usable:
        why = followed[0].flaw if followed else "aucune RetrieveURL dans les KOS publiés"
        return [skipped("WL-05", f"aucune RetrieveURL utilisable à suivre ({why} ; voir FQDN-01)")]
    problems, evidence, other = [], [], []
    for f in usable:
        evidence += _evidence(f.listed, f.unlisted)
        if refused_for_access(f.listed):
            problems.append(f"{f.where} : {listed_who} refusée en suivant « {f.url} » ({_how_refused(f.listed)}) "
                            "alors que son DN figure dans la liste blanche en vigueur")
        elif not served_instances(f.listed):
            other.append(f"{f.where} : {_how_refused(f.listed)}")
        leaked = served_instances(f.unlisted)
        if leaked:
            problems.append(f"{f.where} : {len(leaked)} objet(s) servi(s) à {unlisted_who} en suivant « {f.url} »")
    hosts = sorted({f.url.split("/")[2] for f in usable if f.url.count("/") >= 2})
    details = {"followed": [{"where": f.where, "url": f.url, "flaw": f.flaw} for f in followed],
               "listed_not_served_for_other_reasons": other}
    if problems:
        return [failed("WL-05", " ; ".join(problems[:3]) + (f" ; … ({len(problems) - 3} autre(s))" if len(problems) > 3
                                                            else ""), evidence=evidence, details=details)]
    note = (f" ; {len(other)} réponse(s) à la DRIMbox listée sans images pour une autre raison que la liste blanche "
            f"({other[0]}), hors du champ de WL-05" if other else "")
    return [passed("WL-05", f"{len(usable)} RetrieveURL suivie(s) sur {', '.join(hosts)} : {listed_who} admise par le "
                   f"contrôle d'accès, rien servi à {unlisted_who}{note}", evidence=evidence, details=details)]


@check("MTLS-01")
def client_certificate_refused(ex: Exchange | None, who: str) -> list[Finding]:
    """A client certificate that is expired, not yet valid, from another CA or revoked is served nothing."""
    return _refused("MTLS-01", ex, who, "")


class CrlDownload(TypedDict):
    """One request the IGC publication point answered, from its log (what MTLS-01 reads of it)."""

    time: datetime  # aware UTC
    path: str
    status: int


@check("MTLS-01")
def revoked_after_use_refused(first: Exchange | None, again: Exchange | None, who: str, *, crl_path: str,
                              revoked_at: datetime, answered_at: datetime,
                              crl_downloads: list[CrlDownload]) -> list[Finding]:
    """A client certificate accepted once, then revoked, is refused once the DUT holds a CRL that lists it: no
    revocation status remembered per certificate (or TLS session) beyond the CRL it came from. RFC 5280 §6.3 lets
    a DUT rely on a CRL until its nextUpdate: if it downloaded no CRL of the issuer (`crl_path`, answered 200)
    between the revocation and its answer, nothing can be judged. `crl_downloads`: the IGC publication point's log
    (time, path, status)."""
    if not served_instances(first):
        return [skipped("MTLS-01", f"non jugeable : {who} n'était pas servie avant la révocation "
                        f"({_how_refused(first)} ; voir WL-05)", evidence=_evidence(first))]
    fetched = [d for d in crl_downloads if d.get("path", "").split("?")[0].endswith(crl_path) and d.get("status") == 200
               and revoked_at <= d["time"] <= answered_at]
    served = served_instances(again)
    details = {"crl": crl_path, "revoked_at": revoked_at.isoformat(), "answered_at": answered_at.isoformat(),
               "crl_downloads_after_revocation": [d["time"].isoformat() for d in fetched]}
    if not served:
        return [passed("MTLS-01", f"{who} : refusée après la révocation de son certificat ({_how_refused(again)}), "
                       "alors qu'elle était servie avant", evidence=_evidence(first, again), details=details)]
    if not fetched:
        return [skipped("MTLS-01", f"non jugeable : {who} est encore servie, mais la DRIMbox n'a téléchargé aucune CRL "
                        f"({crl_path}) depuis la révocation : elle peut s'appuyer sur une CRL encore valide "
                        "(RFC 5280 §6.3, nextUpdate)", evidence=_evidence(first, again), details=details)]
    return [failed("MTLS-01", f"{who} : {len(served)} objet(s) DICOM servi(s) après la révocation de son certificat, "
                   f"alors que la DRIMbox a téléchargé le {fetched[0]['time']:%H:%M:%S} UTC la CRL {crl_path} qui le "
                   "révoque (statut de révocation mémorisé depuis le premier accès)", evidence=_evidence(first, again),
                   details=details)]


# ------------------------------------------------------------------------------------------- WL-02 / WL-03 / WL-04


def _inconclusive(requirement: str, before: Exchange | None, served_before: bool, who: str) -> Finding | None:
    """The observation is only meaningful if the peer was treated as the nominal list says before the change."""
    if before is None:
        return None
    if bool(served_instances(before)) != served_before:
        state = "déjà servie" if not served_before else "déjà refusée"
        return skipped(requirement, f"non jugeable : {who} était {state} avant la mise à jour, sous la liste nominale "
                       "(voir WL-05)", evidence=_evidence(before))
    return None


@check("WL-02", "WL-03", "WL-09")
def list_not_applied(requirement: str, ex: Exchange | None, who: str, vector: str,
                     before: Exchange | None = None) -> list[Finding]:
    """After the DUT downloaded an invalid list, the peer that only this list adds is not served.

    before: the same peer's request under the nominal list; if it was already served, the DUT does
    not filter peers at all (WL-05) and whether it applied the list cannot be told.
    """
    return [_inconclusive(requirement, before, False, who)
            or _refused(requirement, ex, who, f"après téléchargement de la liste « {vector} »")[0]]


@check("WL-04")
def previous_list_kept(ex: Exchange | None, who: str, vector: str, before: Exchange | None = None) -> list[Finding]:
    """After a refused list or a failed download, the previously valid list is still in force."""
    inconclusive = _inconclusive("WL-04", before, True, who)
    if inconclusive:
        return [inconclusive]
    if served_instances(ex):
        return [passed("WL-04", f"{who} toujours servie après « {vector} » : la liste précédente reste en vigueur",
                       evidence=_evidence(ex))]
    return [failed("WL-04", f"{who} n'est plus servie après « {vector} » ({_how_refused(ex)}) : la liste valide "
                   "précédente n'est plus appliquée", evidence=_evidence(ex))]


def _whitelist_entries(health: object) -> list[dict[str, Any]]:
    checks = health.get("checks") if isinstance(health, dict) else None
    if not isinstance(checks, list):
        return []
    return [c for c in checks if isinstance(c, dict) and WHITELIST_CHECK_NAME.search(str(c.get("name", "")))]


def _values(obj: object) -> Iterable[str]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _values(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v)
    elif obj is not None:
        yield str(obj)


@check("WL-04")
def failure_visible_in_health(ex: Exchange | None, vector: str) -> list[Finding]:
    """After a failed download, the HealthCheck has a whitelist entry that shows the failure (status or data)."""
    if ex is None or not ex.ok:
        return [failed("WL-04", f"HealthCheck injoignable après « {vector} » ({_how_refused(ex)})", evidence=_evidence(ex))]
    entries = _whitelist_entries(ex.json())
    if not entries:
        return [failed("WL-04", "le HealthCheck ne comporte aucun contrôle nommé « liste blanche » : l'état et l'âge de "
                       "la liste ne sont pas visibles", evidence=_evidence(ex))]
    shown = [e for e in entries if str(e.get("status", "")).upper() != "UP"
             or any(FAILURE_WORDS.search(v) for v in _values(e.get("data")))]
    if shown:
        return [passed("WL-04", f"l'échec « {vector} » est visible dans le HealthCheck ({shown[0].get('name')} : "
                       f"{shown[0].get('status')})", evidence=_evidence(ex), details={"entry": shown[0]})]
    return [failed("WL-04", f"après « {vector} », le contrôle « {entries[0].get('name')} » du HealthCheck ne signale "
                   "aucun échec (statut UP, aucune donnée d'échec)", evidence=_evidence(ex),
                   details={"entry": entries[0]})]


# ------------------------------------------------------------------------------------------- WL-01


@check("WL-01")
def downloaded_at_start(downloads: list[dict[str, Any]], window_s: float) -> list[Finding]:
    """The DUT fetched the whitelist by itself at start (before drimcheck triggered any refresh)."""
    done = [d for d in downloads if d.get("status") == 200 and d.get("complete")]
    if done:
        return [passed("WL-01", f"liste téléchargée au démarrage ({done[0].get('at_utc')}, {done[0].get('bytes_sent')} "
                       "octets)", details={"downloads": downloads})]
    return [failed("WL-01", f"aucun téléchargement de la liste blanche par la DRIMbox à son démarrage (attendu dans les "
                   f"{window_s:g} s suivant le démarrage, avant tout déclenchement par drimcheck)",
                   details={"downloads": downloads})]


@check("WL-01")
def downloaded_on_refresh(downloads: list[dict[str, Any]], deadline_s: float) -> list[Finding]:
    """The daily refresh (test trigger) makes the DUT download the list again."""
    if any(d.get("status") == 200 and d.get("complete") for d in downloads):
        return [passed("WL-01", "la mise à jour quotidienne télécharge à nouveau la liste", details={"downloads": downloads})]
    if any(d.get("status") == 304 for d in downloads):  # conditional GET, as raw.githubusercontent.com answers it
        return [passed("WL-01", "la mise à jour quotidienne revalide la liste (If-None-Match, HTTP 304 : inchangée)",
                       details={"downloads": downloads})]
    return [failed("WL-01", f"aucun téléchargement dans les {deadline_s:g} s suivant le déclenchement de la mise à jour "
                   "quotidienne", details={"downloads": downloads})]


# ------------------------------------------------------------------------------------------- WL-07 / WL-08


@check("WL-07")
def no_external_entity_fetched(canary_requests: list[dict[str, Any]], vector: str) -> list[Finding]:
    """Parsing the list fetched nothing: external entities of a DOCTYPE are never resolved (XXE)."""
    if canary_requests:
        first = canary_requests[0]
        return [failed("WL-07", f"liste « {vector} » : la DRIMbox a résolu l'entité externe de la DTD et requêté "
                       f"{first.get('path')} ({len(canary_requests)} requête(s)) — XXE", details={"requests": [
                           {k: str(v) for k, v in r.items()} for r in canary_requests]})]
    return [passed("WL-07", f"liste « {vector} » : aucune entité externe résolue (aucune requête vers le témoin)")]


@check("WL-07")
def remains_available(ex: Exchange | None, vector: str, budget_s: float) -> list[Finding]:
    """After an entity-expansion list, the DUT still answers its peers promptly (no resource exhaustion)."""
    if ex is not None and ex.ok and ex.elapsed_s <= budget_s:
        return [passed("WL-07", f"après « {vector} », la DRIMbox répond toujours (HTTP {ex.status} en "
                       f"{ex.elapsed_s:.2f} s)", evidence=_evidence(ex))]
    how = _how_refused(ex) if ex is None or not ex.ok else f"réponse en {ex.elapsed_s:.1f} s"
    return [failed("WL-07", f"après « {vector} », la DRIMbox ne répond plus dans les {budget_s:g} s ({how}) : "
                   "épuisement par expansion d'entités", evidence=_evidence(ex))]


@check("WL-08")
def variant_applied(ex: Exchange | None, who: str, vector: str, before: Exchange | None = None) -> list[Finding]:
    """A validly signed list in the 2024 format variant is applied (tolerant parsing)."""
    inconclusive = _inconclusive("WL-08", before, False, who)
    if inconclusive:
        return [inconclusive]
    if served_instances(ex):
        return [passed("WL-08", f"liste « {vector} » appliquée : {who} est servie", evidence=_evidence(ex))]
    return [failed("WL-08", f"liste « {vector} », signée valablement, non appliquée : {who} n'est pas servie "
                   f"({_how_refused(ex)})", evidence=_evidence(ex))]


# ------------------------------------------------------------------------------------------- WL-06 (Conso)


@check("WL-06")
def contacted_only_listed_hosts(requests: list[dict[str, Any]], listed_hosts: Iterable[str],
                                unlisted_host: str) -> list[Finding]:
    """Conso side: the DUT sent nothing to a db host absent from the valid list (peer simulators' request logs)."""
    listed = {h.lower() for h in listed_hosts}
    stray = [r for r in requests if str(r.get("host", "")).lower() not in listed]
    if stray:
        return [failed("WL-06", f"la DRIMbox a contacté {len(stray)} fois un hôte absent de la liste blanche "
                       f"({stray[0].get('host')})", details={"requests": stray[:10]})]
    return [passed("WL-06", f"aucune requête vers {unlisted_host}, absent de la liste blanche")]
