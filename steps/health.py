"""Steps of the HealthCheck features: poll like the Météo, stop and restart the PACS, hand evidence to checks."""

from __future__ import annotations

import time

import pytest
from pytest_bdd import given, parsers, then, when

from drimcheck.checks import health
from drimcheck.plugin import HarnessError
from simulators.meteo import MeteoPoller


def _decimal(text: str) -> float:
    return float(text.replace(",", "."))


@pytest.fixture
def observed():
    """Every HealthCheck exchange of the scenario, in order."""
    return []


@when("la Météo interroge le HealthCheck")
def meteo_polls_once(campaign, observed):
    observed.append(campaign.client.get(campaign.sut.health_url, label="healthcheck"))


@when(parsers.parse("la Météo sonde le HealthCheck {count:d} fois toutes les {interval} s"))
def meteo_polls_n_times(campaign, observed, count, interval):
    poller = MeteoPoller(campaign.client, campaign.sut.health_url, interval_s=_decimal(interval))
    observed.extend(p.exchange for p in poller.poll(count))


@given(parsers.parse("la Météo sonde le HealthCheck en continu toutes les {interval} s"), target_fixture="poller")
def meteo_polls_continuously(campaign, request, interval):
    poller = MeteoPoller(campaign.client, campaign.sut.health_url, interval_s=_decimal(interval))
    poller.start()
    request.addfinalizer(poller.stop)
    return poller


@pytest.fixture
def outage(campaign, request):
    """Times of the PACS outage of the scenario; the PACS is restored whatever happens."""
    request.addfinalizer(campaign.restore_nominal)
    return {"pacs": campaign.pacs_entry()}


@when(parsers.parse("le {rank} PACS de la DRIMbox est arrêté"))
def ranked_pacs_stopped(campaign, outage, poller, rank):
    """Each PACS of a mutualised DRIMbox, not only the first: the last one is the first for a single-PACS DUT."""
    outage["pacs"] = _ranked(campaign, rank)
    pacs_stopped(campaign, outage, poller)


@when("un PACS de la DRIMbox est arrêté")
def pacs_stopped(campaign, outage, poller):
    outage["stopped_at"] = campaign.stop_pacs(outage["pacs"])
    deadline = campaign.sut.timeouts.health_down_s
    poller.wait_for(lambda p: health.read(p.exchange).status == "DOWN", since=outage["stopped_at"], deadline_s=deadline)


@when("ce PACS redémarre")
def pacs_restarted(campaign, outage, poller):
    outage["restarted_at"] = campaign.start_pacs(outage["pacs"])
    deadline = campaign.sut.timeouts.health_up_s
    poller.wait_for(lambda p: p.exchange.status == 200, since=outage["restarted_at"], deadline_s=deadline)
    poller.stop()


def _ranked(campaign, rank: str):
    if rank not in ("premier", "dernier"):
        raise HarnessError(f"rang de PACS inconnu : {rank}")
    return campaign.pacs_entry(0 if rank == "premier" else len(campaign.sut.pacs) - 1)


@when(parsers.parse("le {rank} PACS de la DRIMbox est arrêté à son tour"))
def another_pacs_stopped(campaign, outage, poller, rank):
    """Sequences (issue 9): a second PACS down while the first still is."""
    pacs = _ranked(campaign, rank)
    if pacs is outage["pacs"] or pacs.name == outage["pacs"].name:
        raise HarnessError("défaut du scénario : le second PACS arrêté est le premier (DRIMbox à un seul PACS ?)")
    outage["stopped"] = [outage["pacs"], pacs]
    outage["last_stopped_at"] = campaign.stop_pacs(pacs)
    names = [_pacs_identity(campaign, p) for p in outage["stopped"]]

    def all_named(p) -> bool:
        text = str(health.read(p.exchange).down_checks())
        return all(n.named_in(text) for n in names)

    poller.wait_for(all_named, since=outage["last_stopped_at"], deadline_s=campaign.sut.timeouts.health_down_s)


@then("le HealthCheck passe DOWN en nommant chacun des PACS arrêtés dans le délai imparti")
def down_naming_each(campaign, outage, poller, judge):
    judge(health.reports_each_pacs_down(poller.snapshot(), outage["last_stopped_at"],
                                        [_pacs_identity(campaign, p) for p in outage["stopped"]],
                                        campaign.sut.timeouts.health_down_s))


@when("ces PACS redémarrent")
def stopped_pacs_restart(campaign, outage, poller):
    for p in outage["stopped"]:
        campaign.start_pacs(p)
    outage["restarted_at"] = time.monotonic()
    poller.wait_for(lambda p: p.exchange.status == 200, since=outage["restarted_at"],
                    deadline_s=campaign.sut.timeouts.health_up_s)


@when(parsers.parse("le {rank} PACS de la DRIMbox est de nouveau arrêté"))
def pacs_stopped_again(campaign, outage, poller, rank):
    outage["pacs"] = _ranked(campaign, rank)
    outage["again_at"] = campaign.stop_pacs(outage["pacs"])
    poller.wait_for(lambda p: health.read(p.exchange).status == "DOWN", since=outage["again_at"],
                    deadline_s=campaign.sut.timeouts.health_down_s)


@then("le HealthCheck passe de nouveau DOWN en nommant ce PACS dans le délai imparti")
def down_again_naming_pacs(campaign, outage, poller, judge):
    poller.stop()
    judge(health.reports_pacs_down_again(poller.snapshot(), outage["restarted_at"], outage["again_at"],
                                         _pacs_identity(campaign, outage["pacs"]), campaign.sut.timeouts.health_down_s))


def _pacs_identity(campaign, pacs):
    return health.PacsIdentity(name=pacs.name, db=pacs.db, aet=pacs.aet)


@then(parsers.parse("le HealthCheck passe DOWN en nommant ce PACS dans le délai imparti"))
def down_naming_pacs(campaign, outage, poller, judge):
    judge(health.reports_pacs_down(poller.snapshot(), outage["stopped_at"], _pacs_identity(campaign, outage["pacs"]),
                                   campaign.sut.timeouts.health_down_s))


@then("le HealthCheck redevient UP dans le délai imparti")
def up_again(campaign, outage, poller, judge):
    judge(health.recovers(poller.snapshot(), outage["restarted_at"], campaign.sut.timeouts.health_up_s))


@then("toutes les réponses observées suivent le format MicroProfile Health")
def all_follow_format(poller, judge):
    judge(health.follows_format([p.exchange for p in poller.snapshot()]))


def _patient_identifiers(campaign, study) -> dict[str, str]:
    """The test study's identifying values, plus those of every other patient the PACS simulators hold."""
    ids = dict(study.identifiers())
    others = [s for s in campaign.seeded_studies() if s is not study]
    for n, other in enumerate(others, 2):
        for label, value in other.identifiers().items():
            ids.setdefault(f"{label} (patient n°{n})", value)
    return ids


@then("aucune réponse observée ne contient de donnée patient")
def no_patient_data_in_polls(campaign, poller, study, judge):
    judge(health.no_patient_data([p.exchange for p in poller.snapshot()], _patient_identifiers(campaign, study)))


@then("chaque réponse observée, PACS arrêté compris, arrive dans le délai imparti")
def all_polls_within_budget(campaign, poller, judge):
    """State change: a HealthCheck that waits for an unreachable PACS answers the Météo too late."""
    judge(health.answers_within([p.exchange for p in poller.snapshot()], campaign.sut.timeouts.health_budget_s))


@then("chaque réponse indique le statut UP")
def every_answer_up(observed, judge):
    judge(health.reports_up(observed))


@then("la réponse suit le format MicroProfile Health")
def follows_format(observed, judge):
    judge(health.follows_format(observed))


@then("chaque réponse arrive dans le délai imparti")
def within_budget(campaign, observed, judge):
    judge(health.answers_within(observed, campaign.sut.timeouts.health_budget_s))


@then("la réponse ne contient aucun identifiant ni trait du patient de l'étude de test")
def no_patient_data(campaign, observed, study, judge):
    judge(health.no_patient_data(observed, _patient_identifiers(campaign, study)))
