"""Steps shared by every feature: the test data the simulators hold."""

from __future__ import annotations

from pytest_bdd import given


@given("le PACS simulé détient une étude de test", target_fixture="study")
def pacs_holds_test_study(campaign):
    return campaign.seed_study("etude-de-test")
