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


def lookalike_paths(path: str) -> list[str]:
    """The HealthCheck path and its look-alikes a lenient router also answers (issue 9): trailing slash, upper
    case, a query string. A rule that closes only the exact path leaves them open in clear HTTP."""
    path = path or "/"
    out = [path, path.rstrip("/") + "/", path.upper(), f"{path}?x=1"]
    return list(dict.fromkeys(out))


@when("drimcheck interroge le HealthCheck et ses chemins voisins (barre finale, majuscules, paramètre) en HTTP clair "
      "sur chaque FQDN dbN", target_fixture="clear_probes")
def probe_in_clear(campaign):
    path = urlsplit(campaign.sut.health_url).path or "/"
    probes = {}
    for p in campaign.sut.pacs:
        ep = campaign.sut.endpoint(p.db)
        if not ep.http:
            probes[(p.db, path)] = None
            continue
        for i, variant in enumerate(lookalike_paths(path)):
            probes[(p.db, variant)] = campaign.client.get(f"http://{p.db}{variant}", label=f"clair-{p.db}-{i}")
    return probes


@then("aucun contenu applicatif n'est servi en clair")
def nothing_in_clear(clear_probes, judge):
    for key, ex in clear_probes.items():
        judge(tls.nothing_served_in_clear(ex, key[0] if isinstance(key, tuple) else key))
