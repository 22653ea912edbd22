"""Checks of the fixed FQDN written into the KOS (seed §2.1 « Point d'attention », §2.2).

The RetrieveURL written into a KOS published to the DMP cannot be changed afterwards: every KOS
must point at https://dbN.<registry>.mesimagesmedicales.fr for the dbN assigned to the PACS that
holds the study, and keep that host across every update of the study's KOS.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from drimcheck.checks import check
from drimcheck.config import FQDN_RE
from drimcheck.kos import KosDocument
from drimcheck.verdicts import Finding, errored, failed, passed, skipped

ANS_DOMAIN = ".mesimagesmedicales.fr"


def twin_db(vi_fqdn: str) -> str | None:
    """db<N>.<registry>... for vi<N>.<registry>..., or None when it is not a viN FQDN."""
    m = FQDN_RE.match(vi_fqdn or "")
    return f"db{m.group(2)}.{m.group(3)}.mesimagesmedicales.fr" if m and m.group(1) == "vi" else None


def host_flaw(host: str, expected: str | None) -> str | None:
    """Why a RetrieveURL host is not the expected dbN FQDN (or not a dbN FQDN at all), or None."""
    h = (host or "").lower().rstrip(".")
    if not h:
        return "sans hôte"
    try:
        ipaddress.ip_address(h.strip("[]"))
        return f"adresse IP « {h} » au lieu d'un FQDN dbN"
    except ValueError:
        pass
    if h == "localhost" or h.endswith(".localhost"):
        return f"« {h} » (poste local) au lieu du FQDN dbN"
    m = FQDN_RE.match(h)
    if not h.endswith(ANS_DOMAIN):
        return f"hôte interne ou hors espace de confiance « {h} » au lieu d'un FQDN dbN.<registre>{ANS_DOMAIN}"
    if not m or m.group(1) != "db":
        return f"« {h} » n'est pas un FQDN dbN (forme dbN.<registre>{ANS_DOMAIN})"
    if expected and h != expected.lower():
        return f"« {h} » au lieu de « {expected} » (FQDN dbN du PACS qui détient l'étude)"
    return None


def url_flaws(url: str, expected_db: str | None, study_uid: str, series_uid: str | None,
              *, check_path: bool = True) -> list[str]:
    """Every reason why one RetrieveURL is not https://<expected dbN>/…/studies/<study>[/series/<series>]."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"URL illisible ({exc})"]
    flaws = []
    if parts.scheme != "https":
        flaws.append(f"schéma « {parts.scheme or 'absent'} » au lieu de https")
    flaw = host_flaw(parts.hostname or "", expected_db)
    if flaw:
        flaws.append(flaw)
    if port not in (None, 443):
        flaws.append(f"port {port} au lieu du port HTTPS standard")
    tail = f"/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "")
    if check_path and not parts.path.rstrip("/").endswith(tail):
        flaws.append(f"chemin ne se terminant pas par « {tail} » (l'URL ne mène pas à ce qu'elle référence)")
    if parts.query or parts.fragment:
        flaws.append("paramètres ou fragment inattendus")
    return flaws


@check("FQDN-01")
def retrieve_urls_on_dbn(doc: KosDocument | None, expected_db: str | None, *, viewer_link: str | None = None) -> list[Finding]:
    """Every RetrieveURL is https://<expected dbN>/…/studies/<study>/series/<series> (form only when no dbN is given)."""
    if doc is None:
        return [skipped("FQDN-01", "aucun KOS publié dans ce scénario : aucune RetrieveURL à examiner")]
    if doc.view is None:
        return [failed("FQDN-01", f"{doc.label} illisible : {doc.error}", evidence=doc.evidence)]
    v = doc.view
    if viewer_link and expected_db:
        vi = urlsplit(viewer_link).hostname or ""
        if twin_db(vi) != expected_db.lower():
            return [errored("FQDN-01", f"défaut du banc : le lien visionneuse du CR ({vi}) et le dbN attendu ({expected_db}) "
                            "ne forment pas un couple")]
    flaws: list[str] = []
    checked = 0

    def judge_url(where: str, url: str, study: str, series: str | None, *, check_path: bool = True) -> None:
        nonlocal checked
        checked += 1
        reasons = url_flaws(url, expected_db, study, series, check_path=check_path)
        if reasons:
            flaws.append(f"{where} : « {url} » — {', '.join(reasons)}")

    for st in v.evidence:
        if st.retrieve_url:
            judge_url(f"étude {st.study_uid}", st.retrieve_url, st.study_uid, None)
        for s in st.series:
            if s.retrieve_url:
                judge_url(f"série {s.series_uid}", s.retrieve_url, st.study_uid or v.study_uid, s.series_uid)
            else:
                flaws.append(f"série {s.series_uid} : RetrieveURL absente")
    for where, url in v.stray_retrieve_urls:  # study- or instance-level URLs outside the series items
        judge_url(where, url, v.study_uid, None, check_path=False)
    hosts = sorted({(urlsplit(u).hostname or "?") for _, u in v.retrieve_urls()})
    details = {"expected_db": expected_db, "hosts": hosts, "urls": sorted({u for _, u in v.retrieve_urls()})[:20],
               "viewer_link": viewer_link}
    if not checked and not flaws:
        flaws.append("aucune RetrieveURL dans le KOS")
    if flaws:
        return [failed("FQDN-01", f"{doc.label} : {len(flaws)} RetrieveURL non conforme(s) — {' ; '.join(flaws[:2])}"
                       + (f" ; … ({len(flaws) - 2} autre(s))" if len(flaws) > 2 else ""), evidence=doc.evidence,
                       details={**details, "flaws": flaws})]
    target = expected_db or "un FQDN dbN de l'espace de confiance"
    basis = " (jumeau du viN du lien visionneuse du CR)" if viewer_link else ""
    return [passed("FQDN-01", f"{doc.label} : {checked} RetrieveURL en https://{hosts[0]}/…/studies/…/series/… — "
                   f"{target}{basis}", evidence=doc.evidence, details=details)]


@check("FQDN-02")
def host_kept_across_updates(versions: list[KosDocument]) -> list[Finding]:
    """Every version of a study's KOS (first publication, then each RPLC) uses the same RetrieveURL host."""
    if len(versions) < 2:
        return [skipped("FQDN-02", "moins de deux versions du KOS publiées : stabilité du FQDN non observable "
                        "(voir l'exigence de mise à jour)")]
    views = [(d, d.view) for d in versions if d.view is not None]
    if len(views) < len(versions):
        bad = next(d for d in versions if d.view is None)
        return [failed("FQDN-02", f"{bad.label} illisible : {bad.error}", evidence=bad.evidence)]
    readable = [d for d, _ in views]
    first, first_view = views[0]
    first_hosts = {(urlsplit(u).hostname or "").lower() for _, u in first_view.retrieve_urls()}
    evidence = [e for d in readable for e in d.evidence]
    for later, view in views[1:]:
        hosts = {(urlsplit(u).hostname or "").lower() for _, u in view.retrieve_urls()}
        if hosts != first_hosts:
            return [failed("FQDN-02", f"{later.label} : RetrieveURL sur {', '.join(sorted(hosts)) or 'aucun hôte'} alors que "
                           f"{first.label} utilisait {', '.join(sorted(first_hosts)) or 'aucun hôte'} : le FQDN inscrit au "
                           "DMP a changé lors de la mise à jour", evidence=evidence,
                           details={"first": sorted(first_hosts), "later": sorted(hosts)})]
    return [passed("FQDN-02", f"{len(readable)} versions du KOS, toutes sur {', '.join(sorted(first_hosts))}",
                   evidence=evidence, details={"hosts": sorted(first_hosts), "versions": len(readable)})]


__all__ = ["twin_db", "host_flaw", "url_flaws", "retrieve_urls_on_dbn", "host_kept_across_updates"]
