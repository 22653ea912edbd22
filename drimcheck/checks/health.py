"""Checks of the HealthCheck polled by the Météo des DRIMbox (seed §2.4, spec §7)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from drimcheck.checks import check
from drimcheck.net import Exchange, Poll
from drimcheck.verdicts import Finding, errored, failed, passed, skipped
from drimcheck.verdicts import evidence_of as _evidence

STATUSES = ("UP", "DOWN")


@dataclass(frozen=True)
class PacsIdentity:
    """How a PACS may be named in the HealthCheck: its declared name, dbN FQDN or AE title."""

    name: str
    db: str
    aet: str

    def named_in(self, text: str) -> bool:
        low = text.lower()
        return any(token and token.lower() in low for token in (self.name, self.db, self.aet))


@dataclass
class HealthReading:
    """What one HealthCheck answer says, and what is wrong with its form."""

    http_status: int | None
    status: str | None = None
    checks: list[object] = field(default_factory=list)  # as answered: an item may be anything (a problem)
    problems: list[str] = field(default_factory=list)

    def down_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if isinstance(c, dict) and c.get("status") == "DOWN"]


def read(ex: Exchange) -> HealthReading:
    """Interpret one HealthCheck answer along the MicroProfile Health shape; record every deviation."""
    reading = HealthReading(http_status=ex.status)
    if not ex.ok:
        reading.problems.append(f"pas de réponse : {ex.error}")
        return reading
    ctype = (ex.header("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        reading.problems.append(f"Content-Type « {ctype or 'absent'} » au lieu de application/json")
    body = ex.json()
    if not isinstance(body, dict):
        reading.problems.append("le corps n'est pas un objet JSON")
        return reading
    status = body.get("status")
    if status in STATUSES:
        reading.status = status
    else:
        reading.problems.append(f"champ status absent ou invalide ({status!r})")
    checks = body.get("checks")
    if not isinstance(checks, list):
        reading.problems.append("champ checks absent ou qui n'est pas une liste")
    else:
        for i, c in enumerate(checks):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) or c.get("status") not in STATUSES:
                reading.problems.append(f"checks[{i}] sans name (texte) et status (UP/DOWN)")
            elif "data" in c and not isinstance(c["data"], dict):
                reading.problems.append(f"checks[{i}].data n'est pas un objet")
        reading.checks = checks
    if reading.status:
        expected_http = 200 if reading.status == "UP" else 503
        if ex.status != expected_http:
            reading.problems.append(f"code HTTP {ex.status} avec status {reading.status} (attendu {expected_http})")
        if reading.checks and reading.status == "UP" and reading.down_checks():
            reading.problems.append("status UP alors qu'un contrôle est DOWN")
        if reading.checks and reading.status == "DOWN" and not reading.down_checks():
            reading.problems.append("status DOWN sans aucun contrôle DOWN")
    return reading


@check("HLT-01")
def reports_up(exchanges: list[Exchange]) -> list[Finding]:
    """Every answer while everything is operational is 200 with status UP (availability seen by the Météo)."""
    if not exchanges:
        return [errored("HLT-01", "aucune interrogation du HealthCheck n'a été faite")]
    # An answer cut off by a harness cap (status line received, body too large or unfinished) is the DUT's
    # defect, judged below; only exchanges with no status at all mean nothing could be observed.
    unanswered = [e for e in exchanges if e.status is None]
    if len(unanswered) == len(exchanges):
        return [errored("HLT-01", f"HealthCheck injoignable : {unanswered[0].error}", evidence=_evidence(exchanges))]
    bad = []
    for e in exchanges:
        r = read(e)
        if not e.ok:
            bad.append(f"{e.label} : {e.error}")
        elif e.status != 200 or r.status != "UP":
            bad.append(f"{e.label} : HTTP {e.status}, status {r.status or 'illisible'}")
    availability = 100.0 * (len(exchanges) - len(bad)) / len(exchanges)
    details = {"polls": len(exchanges), "availability_percent": round(availability, 1)}
    if bad:
        return [failed("HLT-01", f"disponibilité {availability:.0f} % sur {len(exchanges)} sondage(s) alors que tout est "
                       f"opérationnel ; premier écart — {bad[0]}", evidence=_evidence(exchanges), details=details)]
    return [passed("HLT-01", f"200 et UP à chaque sondage ({len(exchanges)}), disponibilité 100 %",
                   evidence=_evidence(exchanges), details=details)]


@check("HLT-04")
def follows_format(exchanges: list[Exchange]) -> list[Finding]:
    """Each answer follows MicroProfile Health: JSON, status and checks[name, status], 200 iff UP, 503 iff DOWN."""
    answered = [e for e in exchanges if e.ok]
    if not answered:
        return [errored("HLT-04", "aucune réponse du HealthCheck à examiner", evidence=_evidence(exchanges))]
    for e in answered:
        r = read(e)
        if r.problems:
            return [failed("HLT-04", f"{e.label} : {'; '.join(r.problems)}", evidence=_evidence([e]))]
    # no problem means a status UP or DOWN was read
    statuses = sorted({status for e in answered if (status := read(e).status) is not None})
    return [passed("HLT-04", f"{len(answered)} réponse(s) au format MicroProfile Health (status vus : {', '.join(statuses)})",
                   evidence=_evidence(answered))]


@check("HLT-06")
def answers_within(exchanges: list[Exchange], budget_s: float) -> list[Finding]:
    """Each answer arrives within the response-time budget of the Météo."""
    answered = [e for e in exchanges if e.ok]
    if not answered:
        return [errored("HLT-06", "aucune réponse du HealthCheck à chronométrer", evidence=_evidence(exchanges))]
    slowest = max(answered, key=lambda e: e.elapsed_s)
    details = {"slowest_s": round(slowest.elapsed_s, 3), "budget_s": budget_s, "answers": len(answered)}
    late = [e for e in exchanges if (e.ok and e.elapsed_s > budget_s) or (not e.ok and e.timed_out)]
    if late:
        return [failed("HLT-06", f"{len(late)} réponse(s) au-delà de {budget_s:g} s (la plus lente : "
                       f"{slowest.elapsed_s:.2f} s)", evidence=_evidence(late), details=details)]
    return [passed("HLT-06", f"réponse la plus lente en {slowest.elapsed_s:.3f} s (budget {budget_s:g} s)",
                   evidence=[slowest.evidence] if slowest.evidence else [], details=details)]


def _timeline(polls: list[Poll], since: float) -> list[dict[str, Any]]:
    rows = []
    for p in polls:
        r = read(p.exchange)
        rows.append({"t_s": round(p.received_at - since, 2), "http": p.exchange.status,
                     "status": r.status, "error": p.exchange.error})
    return rows


@check("HLT-02")
def reports_pacs_down(polls: list[Poll], stopped_at: float, pacs: PacsIdentity, deadline_s: float) -> list[Finding]:
    """After the PACS stops, a DOWN answer naming that PACS arrives within the deadline."""
    after = [p for p in polls if p.sent_at >= stopped_at]
    timeline = _timeline(after, stopped_at)
    details: dict[str, Any] = {"deadline_s": deadline_s, "timeline": timeline}
    if not after:
        return [errored("HLT-02", "aucun sondage après l'arrêt du PACS")]
    unnamed = None
    for p in after:
        delay = p.received_at - stopped_at
        if delay > deadline_s:
            break
        r = read(p.exchange)
        if r.status == "DOWN" or (p.exchange.status == 503 and r.down_checks()):
            named = [c for c in r.down_checks() if pacs.named_in(json.dumps(c, ensure_ascii=False))]
            if named:
                details["detected_after_s"] = round(delay, 3)
                return [passed("HLT-02", f"DOWN nommant le PACS « {named[0].get('name')} » {delay:.2f} s après son arrêt",
                               evidence=_evidence([p.exchange]), details=details)]
            unnamed = unnamed or p
    ev = _evidence([p.exchange for p in after][-3:])
    if unnamed is not None:
        return [failed("HLT-02", f"DOWN signalé sans nommer le PACS {pacs.name} ({pacs.db}, AET {pacs.aet}) : "
                       f"{unnamed.exchange.text()[:200]}", evidence=_evidence([unnamed.exchange]), details=details)]
    seen = sorted({f"{row['http']}/{row['status']}" if row["http"] else "sans réponse" for row in timeline})
    return [failed("HLT-02", f"aucune réponse DOWN dans les {deadline_s:g} s suivant l'arrêt du PACS "
                   f"(réponses vues : {', '.join(seen)})", evidence=ev, details=details)]


@check("HLT-02")
def reports_each_pacs_down(polls: list[Poll], stopped_at: float, pacses: list[PacsIdentity],
                           deadline_s: float) -> list[Finding]:
    """Several PACS down at once (issue 9, sequences): within the deadline after the last stop, one DOWN answer
    names every PACS stopped, not only the first that failed."""
    after = [p for p in polls if p.sent_at >= stopped_at]
    details: dict[str, Any] = {"deadline_s": deadline_s, "timeline": _timeline(after, stopped_at),
                               "stopped": [x.name for x in pacses]}
    if not after:
        return [errored("HLT-02", "aucun sondage après l'arrêt du dernier PACS")]
    best: tuple[Poll, list[str]] | None = None
    for p in after:
        delay = p.received_at - stopped_at
        if delay > deadline_s:
            break
        down = read(p.exchange).down_checks()
        if not down:
            continue
        text = json.dumps(down, ensure_ascii=False)
        missing = [x.name for x in pacses if not x.named_in(text)]
        if not missing:
            details["detected_after_s"] = round(delay, 3)
            return [passed("HLT-02", f"DOWN nommant chacun des {len(pacses)} PACS arrêtés en même temps "
                           f"({', '.join(x.name for x in pacses)}) {delay:.2f} s après le dernier arrêt",
                           evidence=_evidence([p.exchange]), details=details)]
        if best is None or len(missing) <= len(best[1]):
            best = (p, missing)
    if best is not None:
        p, missing = best
        return [failed("HLT-02", f"{len(pacses)} PACS arrêtés en même temps : la réponse DOWN ne nomme pas "
                       f"{', '.join(missing)} dans les {deadline_s:g} s ({p.exchange.text()[:200]})",
                       evidence=_evidence([p.exchange]), details=details)]
    return [failed("HLT-02", f"aucune réponse DOWN dans les {deadline_s:g} s suivant l'arrêt de "
                   f"{', '.join(x.name for x in pacses)}", evidence=_evidence([p.exchange for p in after][-3:]),
                   details=details)]


@check("HLT-02")
def reports_pacs_down_again(polls: list[Poll], restarted_at: float, stopped_at: float, pacs: PacsIdentity,
                            deadline_s: float) -> list[Finding]:
    """A second outage after a restart (issue 9, sequences) is reported like the first: judged only if the
    HealthCheck said UP in between (otherwise a stale DOWN would pass; the recovery is HLT-03's business)."""
    between = [p for p in polls if restarted_at <= p.sent_at < stopped_at]
    if not any(p.exchange.status == 200 and read(p.exchange).status == "UP" for p in between):
        return [skipped("HLT-02", f"non jugeable : le HealthCheck n'est pas redevenu UP entre le redémarrage des PACS et "
                        f"le nouvel arrêt de {pacs.name} (voir HLT-03)", evidence=_evidence([p.exchange for p in between][-2:]))]
    findings = reports_pacs_down(polls, stopped_at, pacs, deadline_s)
    for f in findings:
        f.message = f"second arrêt de {pacs.name}, après son redémarrage : {f.message}"
    return findings


@check("HLT-03")
def recovers(polls: list[Poll], restarted_at: float, deadline_s: float) -> list[Finding]:
    """After the PACS is back, a 200/UP answer arrives within the deadline."""
    after = [p for p in polls if p.sent_at >= restarted_at]
    details = {"deadline_s": deadline_s, "timeline": _timeline(after, restarted_at)}
    if not after:
        return [errored("HLT-03", "aucun sondage après le redémarrage du PACS")]
    for p in after:
        delay = p.received_at - restarted_at
        if delay > deadline_s:
            break
        if p.exchange.status == 200 and read(p.exchange).status == "UP":
            details["recovered_after_s"] = round(delay, 3)
            return [passed("HLT-03", f"UP {delay:.2f} s après le redémarrage du PACS",
                           evidence=_evidence([p.exchange]), details=details)]
    last = after[-1].exchange
    return [failed("HLT-03", f"toujours pas UP {deadline_s:g} s après le redémarrage du PACS (dernière réponse : "
                   f"{last.status or last.error})", evidence=_evidence([p.exchange for p in after][-3:]), details=details)]


def _variants(label: str, value: str) -> set[str]:
    out = {value}
    if "^" in value:
        out.update(part for part in value.split("^") if part)
    if re.fullmatch(r"\d{8}", value):
        out.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return {v for v in out if len(v) >= 4}


@check("HLT-05")
def no_patient_data(exchanges: list[Exchange], identifiers: dict[str, str]) -> list[Finding]:
    """No patient identifier or trait of the study held by the PACS appears in any HealthCheck answer."""
    answered = [e for e in exchanges if e.ok]
    if not answered:
        return [errored("HLT-05", "aucune réponse du HealthCheck à examiner", evidence=_evidence(exchanges))]
    needles = {v.lower(): label for label, value in identifiers.items() if value for v in _variants(label, value)}
    for e in answered:
        haystack = (e.text() + "\n" + "\n".join(f"{k}: {v}" for k, v in e.response_headers)).lower()
        hits = sorted({label for needle, label in needles.items() if needle in haystack})
        if hits:
            return [failed("HLT-05", f"{e.label} : la réponse contient des données patient ({', '.join(hits)})",
                           evidence=_evidence([e]), details={"leaked": hits})]
    return [passed("HLT-05", f"aucune des {len(needles)} valeurs identifiantes du patient dans "
                   f"{len(answered)} réponse(s)", evidence=_evidence(answered[:1]))]


__all__ = ["PacsIdentity", "HealthReading", "read", "reports_up", "follows_format", "answers_within",
           "reports_pacs_down", "recovers", "no_patient_data"]
