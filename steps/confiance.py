"""Steps of the trust-space features: whitelist vectors, refresh trigger, peer DRIMbox probes, TLS probes."""

from __future__ import annotations

import ssl

import pytest
from pytest_bdd import given, parsers, then, when

from drimcheck.checks import trust, whitelist
from drimcheck.net import probe_tls_version
from drimcheck.plugin import HarnessError

PEERS_FR = {
    "listée": "listed",
    "absente de la liste": "unlisted",
    "au CN listé mais au DN différent": "usurper",
    "sans certificat client": "no_certificate",
    "retirée": "withdrawn",
    "ajoutée": "added",
    "au CN listé précédé d'un préfixe": "lookalike_prefix",
    "au CN listé suivi d'un point final": "lookalike_dot",
    "au DN listé augmenté d'un attribut": "lookalike_extra_rdn",
}
DEFECTS_FR = {"expiré": "expired", "pas encore valide": "not_yet_valid", "d'une autre AC": "wrong_ca",
              "révoqué": "revoked"}


@pytest.fixture
def endpoint(campaign):
    """The ANS whitelist endpoint simulator of the campaign."""
    sim = campaign.sims.get("whitelist")
    if sim is None:
        raise HarnessError("simulateur de liste blanche absent de la campagne")
    return sim


@pytest.fixture
def peer(campaign, endpoint):
    """A peer Conso with what a Source also requires besides mTLS: a valid PSC token and the study's KOS."""
    from simulators.peer_conso import PeerConso
    from steps.conso import source_access

    return PeerConso(campaign.client, endpoint.peers, wado_root=str(campaign.sut.dut_value("wado_root", "/api/source")),
                     header_providers=[source_access(campaign).access])


def _fetch(campaign, peer, study, identity: str, label: str):
    from steps.conso import source_access

    source_access(campaign, publish=True)  # the DUT must have published the study's KOS (once per campaign)
    series = study.series[0]
    return peer.fetch_series(campaign.pacs_entry().db, study.study_uid, series.series_uid, identity=identity, label=label)


def _expected(study) -> set[str]:
    return {i.sop_uid for i in study.series[0].instances}


def _who(peer, key: str) -> str:
    return f"DRIMbox pair ({peer.identities.get(key).description})"


# ------------------------------------------------------------------------------------------ whitelist


@given("la liste blanche nominale est en vigueur sur la DRIMbox")
def nominal_in_force(campaign, endpoint):
    endpoint.ensure_nominal(campaign)


@when(parsers.parse("le point de publication ANS sert la liste « {vector} »"), target_fixture="vector")
@when(parsers.parse("le point de publication ANS répond « {vector} »"), target_fixture="vector")
def publish(campaign, endpoint, request, vector):
    if vector not in endpoint.vectors.catalogue:
        raise HarnessError(f"vecteur de liste blanche inconnu : {vector}")
    request.addfinalizer(lambda: endpoint.ensure_nominal(campaign))  # scenarios stay independent
    published = endpoint.publish(vector)
    if published.build is not None:
        campaign.evidence.write_bytes(f"liste-{vector}", endpoint.vectors.get(vector), ".xml")
    campaign.evidence.write_json(f"vecteur-{vector}", {"id": published.id, "titre": published.title,
                                                        "nature": published.kind, "mode": published.mode,
                                                        "statut_http": published.status})
    return published


def _refresh(campaign, endpoint) -> dict:
    started = campaign.refresh_whitelist()
    downloads = endpoint.wait_for_download(started, campaign.sut.timeouts.whitelist_s)
    campaign.evidence.write_json("telechargements", [d.to_dict() for d in downloads])
    return {"started": started, "downloads": downloads}


@when("la DRIMbox met à jour sa liste blanche", target_fixture="refresh")
def refresh(campaign, endpoint):
    observed = _refresh(campaign, endpoint)
    if not observed["downloads"]:
        raise HarnessError(f"la DRIMbox n'a pas téléchargé la liste dans les {campaign.sut.timeouts.whitelist_s:g} s "
                           "suivant le déclenchement de la mise à jour : rien à juger (voir WL-01 et [hooks] "
                           "refresh_whitelist)")
    return observed


@then("la DRIMbox a téléchargé la liste blanche à son démarrage")
def downloaded_at_start(campaign, endpoint, judge):
    downloads = [d.to_dict() for d in (endpoint.startup_downloads or [])]
    judge(whitelist.downloaded_at_start(downloads, campaign.sut.timeouts.whitelist_s))


@when("la mise à jour quotidienne de la liste blanche est déclenchée", target_fixture="daily")
def daily_refresh(campaign, endpoint):
    return _refresh(campaign, endpoint)


@then("la DRIMbox télécharge à nouveau la liste blanche")
def downloaded_again(campaign, daily, judge):
    judge(whitelist.downloaded_on_refresh([d.to_dict() for d in daily["downloads"]], campaign.sut.timeouts.whitelist_s))


@given(parsers.parse("la DRIMbox sert la DRIMbox pair « {served} » mais pas la DRIMbox pair « {refused} »"),
       target_fixture="before")
def observe_before(campaign, peer, study, served, refused):
    """What the nominal list lets through, observed before the change (control of later judgements; no verdict)."""
    return {key: _fetch(campaign, peer, study, key, f"avant-{key}") for key in (_identity(served), _identity(refused))}


@then("la DRIMbox pair que seule cette liste ajoute n'est pas servie")
def injected_peer_not_served(campaign, peer, study, vector, before, judge):
    requirement = {"signataire": "WL-03", "revocation": "WL-09"}.get(vector.kind, "WL-02")
    ex = _fetch(campaign, peer, study, "unlisted", f"pair-absente-{vector.id}")
    judge(whitelist.list_not_applied(requirement, ex, _who(peer, "unlisted"), vector.id, before.get("unlisted")))


@then("la DRIMbox pair listée auparavant est toujours servie")
def listed_still_served(campaign, peer, study, vector, before, judge):
    ex = _fetch(campaign, peer, study, "listed", f"pair-listee-{vector.id}")
    judge(whitelist.previous_list_kept(ex, _who(peer, "listed"), vector.id, before.get("listed")))


@then("le HealthCheck indique de nouveau le statut UP")
def health_up_again(campaign, judge):
    """State after a failure: once a list is applied again, the HealthCheck is UP again (not stuck DOWN)."""
    from drimcheck.checks import health

    ex = campaign.client.get(campaign.sut.health_url, label="healthcheck-apres-liste-valide")
    judge(health.reports_up([ex]))


@then("le HealthCheck signale l'échec de la mise à jour de la liste blanche")
def health_shows_failure(campaign, vector, judge):
    ex = campaign.client.get(campaign.sut.health_url, label="healthcheck-liste-blanche")
    judge(whitelist.failure_visible_in_health(ex, vector.id))


@then("la DRIMbox n'a résolu aucune entité externe")
def no_external_entity(endpoint, vector, judge):
    judge(whitelist.no_external_entity_fetched(endpoint.canary_requests(), vector.id))


@then("la DRIMbox répond toujours à ses pairs")
def still_available(campaign, peer, study, vector, judge):
    ex = _fetch(campaign, peer, study, "listed", f"pair-listee-{vector.id}")
    judge(whitelist.remains_available(ex, vector.id, campaign.sut.timeouts.request_s))


@then("la DRIMbox pair ajoutée par cette liste est servie")
def added_peer_served(campaign, peer, study, vector, before, judge):
    ex = _fetch(campaign, peer, study, "added", f"pair-ajoutee-{vector.id}")
    judge(whitelist.variant_applied(ex, _who(peer, "added"), vector.id, before.get("added")))


# ------------------------------------------------------------------------------------------ peers (mTLS)


def _identity(label: str) -> str:
    if label not in PEERS_FR:
        raise HarnessError(f"DRIMbox pair inconnue : « {label} » (connues : {', '.join(PEERS_FR)})")
    return PEERS_FR[label]


@given(parsers.parse("la DRIMbox pair « {pair} » est servie"))
def peer_is_served(campaign, peer, study, pair, judge):
    key = _identity(pair)
    ex = _fetch(campaign, peer, study, key, f"pair-{key}-avant")
    judge(whitelist.listed_peer_served(ex, _who(peer, key), _expected(study)))


@when(parsers.parse("la DRIMbox pair « {pair} » demande une série de l'étude"), target_fixture="answer")
def peer_asks(campaign, peer, study, pair):
    key = _identity(pair)
    return {"key": key, "exchange": _fetch(campaign, peer, study, key, f"pair-{key}")}


@when(parsers.parse("une DRIMbox pair présente un certificat client « {defect} » et demande une série de l'étude"),
      target_fixture="answer")
def defective_client(campaign, peer, study, defect):
    if defect not in DEFECTS_FR:
        raise HarnessError(f"défaut de certificat inconnu : « {defect} » (connus : {', '.join(DEFECTS_FR)})")
    key = DEFECTS_FR[defect]
    return {"key": key, "exchange": _fetch(campaign, peer, study, key, f"certificat-{key}")}


@then("la série lui est servie")
def series_served(peer, study, answer, judge):
    judge(whitelist.listed_peer_served(answer["exchange"], _who(peer, answer["key"]), _expected(study)))


@then("rien ne lui est servi")
def nothing_served(peer, answer, judge):
    who = _who(peer, answer["key"])
    if answer["key"] in DEFECTS_FR.values():
        judge(whitelist.client_certificate_refused(answer["exchange"], who))
    else:
        judge(whitelist.unlisted_peer_refused(answer["exchange"], who))


@then(parsers.parse("la DRIMbox pair « {pair} » n'est plus servie"))
def no_longer_served(campaign, peer, study, pair, judge):
    key = _identity(pair)
    ex = _fetch(campaign, peer, study, key, f"pair-{key}-apres")
    judge(whitelist.unlisted_peer_refused(ex, _who(peer, key), "après la mise à jour de la liste blanche"))


@given("une DRIMbox pair au DN listé a été servie avec un certificat client valide", target_fixture="revocation")
def served_before_revocation(campaign, peer, study):
    """Time and state (issue 9): a certificate the DUT accepted once, to be revoked by the scenario."""
    ident = peer.identities.get("revoked_after_use")
    if campaign.pki.is_revoked(ident.issued):
        raise HarnessError("défaut du banc : le certificat à révoquer après usage l'est déjà (scénario rejoué ?)")
    return {"key": ident.key, "first": _fetch(campaign, peer, study, ident.key, "pair-avant-revocation")}


@when("l'IGC-Santé révoque ce certificat client")
def igc_revokes(campaign, peer, revocation):
    from datetime import UTC, datetime

    ident = peer.identities.get(revocation["key"])
    revocation["revoked_at"] = datetime.now(UTC)
    campaign.pki.revoke(ident.issued)


@when("cette DRIMbox pair demande de nouveau une série de l'étude")
def asks_again_after_revocation(campaign, peer, study, revocation):
    revocation["again"] = _fetch(campaign, peer, study, revocation["key"], "pair-apres-revocation")


@then("rien ne lui est servi dès lors que la DRIMbox a téléchargé une CRL qui révoque son certificat")
def refused_after_revocation(campaign, peer, revocation, judge):
    from datetime import datetime, timedelta
    from urllib.parse import urlsplit

    from cryptography import x509

    ident = peer.identities.get(revocation["key"])
    points = ident.issued.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [n.value for p in points for n in (p.full_name or []) if str(n.value).startswith("http")]
    if not urls:
        raise HarnessError("défaut du banc : certificat de pair sans point de distribution de CRL")
    again = revocation["again"]
    answered = datetime.fromisoformat(again.started_at) + timedelta(seconds=again.elapsed_s + 0.5)
    igc = campaign.sims.get("igc")
    downloads = [{"time": r["time"], "path": r["path"] or "", "status": r["status"]}
                 for r in (igc.requests if igc is not None else [])]
    campaign.evidence.write_json("telechargements-crl", downloads)
    judge(whitelist.revoked_after_use_refused(revocation["first"], again, _who(peer, revocation["key"]),
                                              crl_path=urlsplit(urls[0]).path, revoked_at=revocation["revoked_at"],
                                              answered_at=answered, crl_downloads=downloads))


# ------------------------------------------------------------------------------------------ TLS of dbN and viN


def _fqdns(campaign, which: str) -> list[str]:
    out = []
    for p in campaign.sut.pacs:
        if "db" in which:
            out.append(p.db)
        if "vi" in which:
            out.append(p.vi)
    return out


@when("drimcheck se connecte en TLS à chaque FQDN viN de la DRIMbox", target_fixture="vi_handshakes")
def connect_every_vin(campaign):
    out = {}
    for fqdn in _fqdns(campaign, "vi"):
        if campaign.sut.endpoint(fqdn).https is None:
            raise HarnessError(f"{campaign.sut.source_file} : [network] doit donner une adresse https pour {fqdn}")
        out[fqdn] = campaign.client.get(f"https://{fqdn}/", label=f"tls-{fqdn}")
    return out


@then("le certificat présenté est un certificat OV du marché au nom du FQDN viN")
def vin_market_certificate(campaign, vi_handshakes, judge):
    market, igc = campaign.market_trust_anchors(), campaign.trust_anchors()
    for fqdn, ex in vi_handshakes.items():
        judge(trust.market_certificate(ex.tls, fqdn, market, igc))


@when("drimcheck se connecte en TLS à chaque FQDN dbN et viN de la DRIMbox", target_fixture="all_handshakes")
def connect_every_fqdn(campaign):
    out = {}  # only the handshake matters here: any path will do
    for fqdn in _fqdns(campaign, "db vi"):
        if campaign.sut.endpoint(fqdn).https is not None:
            out[fqdn] = campaign.client.get(f"https://{fqdn}/", label=f"tls-{fqdn}")
    return out


@then("chaque certificat présenté est en cours de validité")
def every_certificate_valid(all_handshakes, judge):
    for fqdn, ex in all_handshakes.items():
        judge(trust.presented_chain_valid(ex.tls, fqdn))


@when("drimcheck tente une poignée de main TLS 1.0 puis TLS 1.1 sur chaque FQDN dbN et viN", target_fixture="legacy")
def legacy_handshakes(campaign):
    out = {}
    for fqdn in _fqdns(campaign, "db vi"):
        ep = campaign.sut.endpoint(fqdn)
        if ep.https is None:
            continue
        probes = [probe_tls_version(ep.https, fqdn, version, timeout=campaign.sut.timeouts.request_s,
                                    evidence=campaign.evidence, label=f"{version.name}-{fqdn}")
                  for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)]
        control = campaign.client.get(f"https://{fqdn}/", label=f"tls-moderne-{fqdn}")
        out[fqdn] = (probes, control)
    return out


@then("chaque tentative est refusée alors que TLS 1.2 ou plus est accepté")
def legacy_refused(legacy, judge):
    for fqdn, (probes, control) in legacy.items():
        judge(trust.legacy_tls_refused(probes, control, fqdn))


@when("drimcheck interroge la visionneuse en HTTP clair sur chaque FQDN viN", target_fixture="clear_probes")
def viewer_in_clear(campaign):
    probes = {}
    for fqdn in _fqdns(campaign, "vi"):
        ep = campaign.sut.endpoint(fqdn)
        probes[fqdn] = campaign.client.get(f"http://{fqdn}/", label=f"clair-{fqdn}") if ep.http else None
    return probes


@when("drimcheck explore /.well-known/acme-challenge/ et ses chemins voisins (sans barre finale, en majuscules) en "
      "HTTP clair sur chaque FQDN viN", target_fixture="acme")
def explore_acme(campaign):
    out = {}
    for fqdn in _fqdns(campaign, "vi"):
        if campaign.sut.endpoint(fqdn).http is None:
            out[fqdn] = (None, [], [])
            continue
        index = campaign.client.get(f"http://{fqdn}{trust.ACME_DIR}", label=f"acme-index-{fqdn}")
        variants = [campaign.client.get(f"http://{fqdn}{path}", label=f"acme-voisin-{i}-{fqdn}")
                    for i, path in enumerate(trust.ACME_LOOKALIKES)]
        names: list[str] = []
        for probe in (index, *variants):
            names += [n for n in trust.listed_challenge_files(probe) if n not in names]
        base = f"http://{fqdn}{trust.ACME_DIR}"
        out[fqdn] = (index, [campaign.client.get(base + name, label=f"acme-{name[:12]}") for name in names[:5]], variants)
    return out


@then("aucun fichier de challenge ACME n'y est servi")
def no_acme_file(acme, judge):
    for fqdn, (index, files, variants) in acme.items():
        judge(trust.no_stale_acme_challenge(index, files, fqdn, variants))

