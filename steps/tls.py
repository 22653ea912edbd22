"""Steps of the certificate and transport features of the fixed FQDNs."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from pytest_bdd import then, when

from drimcheck.checks import tls


@pytest.fixture
def handshakes():
    return {}


@when("drimcheck se connecte en TLS à chaque FQDN dbN de la DRIMbox")
def connect_every_dbn(campaign, handshakes):
    path = urlsplit(campaign.sut.health_url).path or "/"
    for p in campaign.sut.pacs:
        handshakes[p.db] = campaign.client.get(f"https://{p.db}{path}", label=f"tls-{p.db}")


@then("le certificat présenté chaîne vers la racine IGC-Santé avec l'usage serveur")
def chains_to_igc(campaign, handshakes, judge):
    anchors = campaign.trust_anchors()
    for fqdn, ex in handshakes.items():
        judge(tls.chains_to_igc_sante(ex.tls, fqdn, anchors))


@then("le certificat porte le FQDN dbN dans son subjectAltName")
def san_names_fqdn(handshakes, judge):
    for fqdn, ex in handshakes.items():
        judge(tls.san_names_fqdn(ex.tls, fqdn))


@then("le certificat est en cours de validité")
def currently_valid(handshakes, judge):
    for fqdn, ex in handshakes.items():
        judge(tls.currently_valid(ex.tls, fqdn))


@when("drimcheck interroge le HealthCheck en HTTP clair sur chaque FQDN dbN", target_fixture="clear_probes")
def probe_in_clear(campaign):
    path = urlsplit(campaign.sut.health_url).path or "/"
    probes = {}
    for p in campaign.sut.pacs:
        ep = campaign.sut.endpoint(p.db)
        probes[p.db] = campaign.client.get(f"http://{p.db}{path}", label=f"clair-{p.db}") if ep.http else None
    return probes


@then("aucun contenu applicatif n'est servi en clair")
def nothing_in_clear(clear_probes, judge):
    for fqdn, ex in clear_probes.items():
        judge(tls.nothing_served_in_clear(ex, fqdn))
