"""Checks of the Source behaviour: HL7 acknowledgements and what reaches the DMP, and when (spec §4, §11).

Inputs are the RIS simulator's MLLP exchanges (message + ACK) and the DMP simulator's records for
the study of the scenario, observed over bounded windows by the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from drimcheck import xds
from drimcheck.checks import check
from drimcheck.checks.whitelist import FollowedUrl
from drimcheck.hl7 import Ack, read_ack
from drimcheck.kos import KosDocument
from drimcheck.verdicts import Finding, errored, failed, passed, skipped
from drimcheck.verdicts import evidence_of as _ev


class MllpRecord(Protocol):
    """What these checks read of one HL7 message sent over MLLP and its acknowledgement, as the RIS simulator
    records it (simulators.ris.MllpExchange; re-judged: a codec Record with the same attributes)."""

    @property
    def message_type(self) -> str: ...
    @property
    def ack(self) -> bytes | None: ...
    @property
    def error(self) -> str | None: ...  # transport error: no acknowledgement
    @property
    def sent_at(self) -> float: ...  # time.monotonic()
    @property
    def elapsed_s(self) -> float | None: ...  # until the acknowledgement
    @property
    def evidence(self) -> list[str]: ...


def _ack_of(exchange: MllpRecord) -> Ack:
    if exchange.error:
        return Ack(None, "", "", f"pas d'acquittement ({exchange.error})")
    return read_ack(exchange.ack)


def _describe_ack(ack: Ack) -> str:
    if ack.code is None:
        return ack.problem or "acquittement illisible"
    return f"ACK {ack.code}" + (f" « {ack.text} »" if ack.text else "")


@check("SRC-01")
def acknowledged_and_published(mllp: MllpRecord, publication: xds.DmpExchange | None, attempts: list[xds.DmpExchange],
                               deadline_s: float) -> list[Finding]:
    """The report is acknowledged AA and its KOS is registered by the DMP (ITI-41 Success) within the deadline."""
    ack = _ack_of(mllp)
    what = mllp.message_type or "message"
    if ack.code != "AA":
        return [failed("SRC-01", f"{what} valide : {_describe_ack(ack)} au lieu de AA", evidence=_ev(mllp, attempts))]
    if publication is None:
        tried = f" ({len(attempts)} tentative(s) refusée(s) : {attempts[0].describe()})" if attempts else ""
        return [failed("SRC-01", f"{what} acquitté AA mais aucun KOS enregistré au DMP dans les {deadline_s:g} s{tried}",
                       evidence=_ev(mllp, attempts))]
    delay = publication.received_at - mllp.sent_at
    return [passed("SRC-01", f"{what} acquitté AA en {mllp.elapsed_s:.2f} s, KOS publié au DMP {delay:.2f} s après l'envoi "
                   f"({publication.describe()})", evidence=_ev(mllp, publication),
                   details={"ack_s": round(mllp.elapsed_s or 0, 3), "publication_s": round(delay, 3)})]


def _refused_without_publication(req: str, cases: list[tuple[str, MllpRecord]], attempts: list[xds.DmpExchange],
                                 window_s: float, why: str) -> list[Finding]:
    problems = []
    for label, mllp in cases:
        ack = _ack_of(mllp)
        if not ack.error:
            problems.append(f"{label} : {_describe_ack(ack)} au lieu d'un acquittement d'erreur (AE/AR)")
    if attempts:
        problems.append(f"{len(attempts)} publication(s) au DMP malgré {why} ({attempts[0].describe()})")
    evidence = _ev([m for _, m in cases], attempts)
    if problems:
        return [failed(req, " ; ".join(problems), evidence=evidence)]
    acks = ", ".join(f"{label} → {_describe_ack(_ack_of(m))}" for label, m in cases)
    return [passed(req, f"{acks} ; aucune publication au DMP pendant {window_s:g} s", evidence=evidence)]


@check("SRC-02")
def mismatch_refused(cases: list[tuple[str, MllpRecord]], attempts: list[xds.DmpExchange],
                     window_s: float) -> list[Finding]:
    """An accession or IPP mismatch between the report and the images: error ACK and no publication."""
    return _refused_without_publication("SRC-02", cases, attempts, window_s, "l'incohérence entre le CR et les images")


@check("SRC-03")
def malformed_refused(cases: list[tuple[str, MllpRecord]], attempts: list[xds.DmpExchange],
                      window_s: float) -> list[Finding]:
    """A malformed message (no OBX, bad base64, unknown INS OID): AE/AR and no publication."""
    return _refused_without_publication("SRC-03", cases, attempts, window_s, "un message mal formé")


@check("SRC-04")
def absent_study_not_published(mllp: MllpRecord, attempts: list[xds.DmpExchange], window_s: float) -> list[Finding]:
    """No KOS is published for a study the PACS does not hold (the ACK is reported, not judged)."""
    ack = _describe_ack(_ack_of(mllp))
    if attempts:
        return [failed("SRC-04", f"KOS publié pour une étude absente du PACS ({attempts[0].describe()}) ; {ack}",
                       evidence=_ev(mllp, attempts))]
    return [passed("SRC-04", f"aucune publication pendant {window_s:g} s pour l'étude absente du PACS ({ack})",
                   evidence=_ev(mllp))]


@check("SRC-05")
def dmp_failure_handled(mllps: list[MllpRecord], attempts: list[xds.DmpExchange], deadline_s: float,
                        window_s: float) -> list[Finding]:
    """After a DMP Failure the report is not lost (one later submission succeeds) and not published twice."""
    evidence = _ev(mllps, attempts)
    publications = [a for a in attempts if a.kind == "ITI-41"]
    if not publications:
        return [failed("SRC-05", "aucune tentative de publication reçue par le DMP", evidence=evidence)]
    first = publications[0]
    if not first.forced:
        return [errored("SRC-05", f"défaut du banc : la première soumission ({first.describe()}) n'a pas reçu l'échec "
                        "demandé par le scénario", evidence=evidence)]
    successes = [a for a in publications if a.success]
    if not successes:
        last = publications[-1].describe()
        return [failed("SRC-05", f"CR perdu : après l'échec du DMP, aucune publication réussie dans les {deadline_s:g} s "
                       f"({len(publications)} soumission(s), dernière : {last})", evidence=evidence)]
    if len(successes) > 1:
        return [failed("SRC-05", f"publié deux fois : {len(successes)} soumissions acceptées pour la même étude "
                       f"({', '.join(a.describe() for a in successes)})", evidence=evidence)]
    delay = successes[0].received_at - first.received_at
    return [passed("SRC-05", f"échec du DMP puis nouvelle tentative acceptée {delay:.2f} s plus tard ; une seule "
                   f"publication en {window_s:g} s d'observation ({len(publications)} soumission(s) au total)",
                   evidence=evidence, details={"retry_after_s": round(delay, 3), "submissions": len(publications)})]


@check("SRC-06")
def replaced_with_rplc(trigger: str, previous: xds.DmpExchange | None, update: xds.DmpExchange | None,
                       deadline_s: float) -> list[Finding]:
    """The new version of the KOS is published with an RPLC association to the entry it replaces."""
    if previous is None or not previous.success or previous.request is None:  # a success was read
        return [errored("SRC-06", "défaut du scénario : la publication initiale du KOS n'a pas eu lieu, la mise à jour "
                        "n'est pas observable (voir SRC-01)", evidence=_ev(previous))]
    old = next(iter(previous.assigned.get(e.id) for e in previous.request.kos_entries()), None)
    if update is None:
        return [failed("SRC-06", f"{trigger} : aucune nouvelle version du KOS publiée au DMP dans les {deadline_s:g} s",
                       evidence=_ev(previous))]
    rplc = update.request.associations(xds.RPLC) if update.request else []
    if not rplc:
        return [failed("SRC-06", f"{trigger} : nouvelle version publiée sans association RPLC ({update.describe()}) — "
                       "l'ancien KOS reste « Approved » au DMP", evidence=_ev(previous, update))]
    if not any(a.target == old for a in rplc):
        return [failed("SRC-06", f"{trigger} : RPLC vers {', '.join(a.target for a in rplc)} au lieu de la fiche publiée {old}",
                       evidence=_ev(previous, update))]
    if not update.success:
        return [failed("SRC-06", f"{trigger} : remplacement refusé par le DMP ({update.describe()})",
                       evidence=_ev(previous, update))]
    return [passed("SRC-06", f"{trigger} : nouvelle version publiée avec RPLC vers {old} ({update.describe()})",
                   evidence=_ev(previous, update))]


@check("SRC-06")
def replaced_after_failure(trigger: str, previous: xds.DmpExchange | None, update: xds.DmpExchange | None,
                           deadline_s: float) -> list[Finding]:
    """After a DMP Failure on an update, the successful retry still replaces the entry in force (RPLC). No
    successful retry at all is a lost report, judged by SRC-05: not a second verdict here."""
    if update is None and previous is not None and previous.success:
        return [skipped("SRC-06", f"{trigger} : aucune nouvelle version acceptée par le DMP dans les {deadline_s:g} s "
                        "(report perdu : jugé par SRC-05)")]
    return replaced_with_rplc(trigger, previous, update, deadline_s)


@check("SRC-07")
def unpublished(trigger: str, current_entry: str | None, after: list[xds.DmpExchange], deadline_s: float) -> list[Finding]:
    """The KOS is unpublished by ITI-57: UpdateAvailabilityStatus Approved -> Deleted on its entry."""
    if current_entry is None:
        return [errored("SRC-07", "défaut du scénario : aucun KOS publié à dépublier (voir SRC-01)")]
    deletions = [e for e in after if e.kind == "ITI-57"]
    for e in deletions:
        if e.request is None:
            continue
        for a in e.request.associations(xds.UPDATE_AVAILABILITY):
            if a.target == current_entry and a.slot("NewStatus") == xds.STATUS_DELETED:
                if not e.success:
                    return [failed("SRC-07", f"{trigger} : ITI-57 refusé par le DMP ({e.describe()})", evidence=_ev(e))]
                before = (a.slot("OriginalStatus") or "?").rsplit(":", 1)[-1]
                return [passed("SRC-07", f"{trigger} : ITI-57 {before} → Deleted sur {current_entry} "
                               f"({e.describe()})", evidence=_ev(e))]
    others = [e for e in after if e.kind == "ITI-41"]
    if deletions:
        return [failed("SRC-07", f"{trigger} : ITI-57 reçu mais sans passage de {current_entry} au statut "
                       f"{xds.STATUS_DELETED}", evidence=_ev(deletions))]
    hint = f" ; reçu à la place : {others[0].describe()}" if others else ""
    return [failed("SRC-07", f"{trigger} : aucune dépublication (ITI-57) dans les {deadline_s:g} s{hint}",
                   evidence=_ev(others))]


@dataclass
class PacsOutcome:
    """One study of a mutualised DRIMbox: the PACS that holds it and what the DMP received for it."""

    pacs_name: str
    db: str
    study_uid: str
    publication: xds.DmpExchange | None
    kos: KosDocument | None
    mllp: MllpRecord | None = None


@check("SRC-08")
def each_study_with_its_pair(outcomes: list[PacsOutcome], deadline_s: float) -> list[Finding]:
    """A mutualised Source publishes the study of each of its PACS, never with the dbN FQDN of another of its PACS.

    Whether each URL is the right dbN FQDN at all (not localhost, an IP...) is FQDN-01's business."""
    problems, ok = [], []
    for o in outcomes:
        if o.publication is None or o.kos is None or o.kos.view is None:
            ack = _describe_ack(_ack_of(o.mllp)) if o.mllp is not None else "—"
            problems.append(f"étude du PACS {o.pacs_name} non publiée dans les {deadline_s:g} s ({ack})")
            continue
        others = {x.db.lower(): x.pacs_name for x in outcomes if x.db.lower() != o.db.lower()}
        hosts = sorted({(urlsplit(u).hostname or "?").lower() for _, u in o.kos.view.retrieve_urls()})
        crossed = [h for h in hosts if h in others]
        if crossed:
            problems.append(f"étude du PACS {o.pacs_name} publiée sur {', '.join(crossed)}, le FQDN du PACS "
                            f"{others[crossed[0]]}, au lieu de {o.db}")
        else:
            ok.append(f"{o.pacs_name} → {', '.join(hosts)}")
    evidence = _ev([o.mllp for o in outcomes], [o.publication for o in outcomes])
    if problems:
        return [failed("SRC-08", " ; ".join(problems), evidence=evidence)]
    return [passed("SRC-08", f"{len(outcomes)} études publiées, chacune sans le FQDN d'un autre PACS de la DRIMbox : "
                   f"{', '.join(ok)}", evidence=evidence)]


# ------------------------------------------------------------------------------------------- WADO-01 (artefact used)

#: the refusals WADO-01 defines (400 request, 404 KOS/object, 410 gone): wrong when the KOS in force references
#: the object and the PACS holds it. 401 (PSC-01), 403 / TLS (whitelist), 406 / 5xx are other requirements' business.
WADO_REFUSALS = (400, 404, 410)


@check("WADO-01")
def followed_urls_not_refused(followed: list[FollowedUrl], context: str) -> list[Finding]:
    """Every RetrieveURL of the KOS in force, followed as a Conso does (listed peer, PSC token, the KOS's own
    SOPInstanceUID), on the dbN of every PACS and for every version of the KOS: the Source must not answer 400,
    404 or 410 for a series the KOS references and the PACS still holds."""
    judged, problems, evidence, other = [], [], [], []
    for f in followed:
        ex = f.listed
        if f.flaw is not None or ex is None:
            continue
        if ex.evidence:
            evidence.append(ex.evidence)
        if not f.expected:
            other.append(f"{f.where} : aucune instance référencée encore détenue par le PACS")
            continue
        status = ex.status if ex.ok else None
        if status in WADO_REFUSALS:
            body = ex.text()[:120] if ex.response_body else ""
            problems.append(f"{f.where} : HTTP {status} en suivant « {f.url} » avec le KOS qui la référence, alors que "
                            f"le PACS détient ses {len(f.expected)} instance(s) référencée(s)" + (f" ({body})" if body else ""))
            judged.append(f)
        elif status is not None and 200 <= status < 300:
            judged.append(f)
        else:
            other.append(f"{f.where} : {ex.error or f'HTTP {status}'}")
    details = {"followed": [{"where": f.where, "url": f.url, "status": f.listed.status if f.listed else None}
                            for f in followed], "not_judged": other}
    if problems:
        return [failed("WADO-01", f"{context} : " + " ; ".join(problems[:3])
                       + (f" ; … ({len(problems) - 3} autre(s))" if len(problems) > 3 else ""),
                       evidence=evidence, details=details)]
    if not judged:
        why = other[0] if other else "aucune RetrieveURL suivie (voir FQDN-01 et WL-05)"
        return [skipped("WADO-01", f"{context} : rien à juger ({why})", evidence=evidence, details=details)]
    hosts = sorted({f.url.split("/")[2] for f in judged if f.url.count("/") >= 2})
    return [passed("WADO-01", f"{context} : {len(judged)} RetrieveURL suivie(s) sur {', '.join(hosts)} avec le "
                   "KOS qui les référence, aucune refusée en 400, 404 ou 410", evidence=evidence, details=details)]


__all__ = ["followed_urls_not_refused",
           "acknowledged_and_published", "mismatch_refused", "malformed_refused", "absent_study_not_published",
           "dmp_failure_handled", "replaced_with_rplc", "replaced_after_failure", "unpublished", "PacsOutcome",
           "each_study_with_its_pair", "MllpRecord"]
