"""Loading the simulators of a campaign (drimcheck/campaign.py: SIMULATORS, _load_starter): a simulator that cannot
be loaded is a HarnessError naming it, raised before any simulator starts, never a simulator silently left out."""

from __future__ import annotations

import sys

import pytest

from drimcheck import campaign, config
from drimcheck.campaign import SIMULATORS, CampaignRuntime, _load_starter
from drimcheck.errors import HarnessError

PROBE = "drimcheck_starter_probe"  # a module written into tmp_path for these tests only


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A loadable simulator module whose starter records its calls, and one that imports a missing module."""
    (tmp_path / f"{PROBE}.py").write_text("CALLS = []\n\ndef start(runtime):\n    CALLS.append(runtime)\n    return None\n",
                                          encoding="utf-8")
    (tmp_path / f"{PROBE}_broken.py").write_text("import drimcheck_no_such_dependency\n\ndef start(runtime):\n"
                                                 "    return None\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in (PROBE, f"{PROBE}_broken"):
        sys.modules.pop(name, None)


def test_every_simulator_of_a_campaign_loads():
    for name, target in SIMULATORS:
        assert callable(_load_starter(name, target)), target


def test_missing_module_is_a_harness_error_naming_it():
    with pytest.raises(HarnessError) as err:
        _load_starter("igc", "simulators.no_such_simulator:start_for_campaign")
    assert str(err.value) == ("simulateur igc : module simulators.no_such_simulator introuvable "
                              "(installation de drimcheck incomplète)")


def test_missing_package_of_the_module_is_a_harness_error_naming_the_module():
    with pytest.raises(HarnessError) as err:
        _load_starter("dmp", "drimcheck_no_such_package.dmp:start_for_campaign")
    assert str(err.value) == ("simulateur dmp : module drimcheck_no_such_package.dmp introuvable "
                              "(installation de drimcheck incomplète)")


def test_module_missing_a_dependency_names_both(probe):
    with pytest.raises(HarnessError) as err:
        _load_starter("psc", f"{PROBE}_broken:start")
    assert str(err.value) == (f"simulateur psc : le module {PROBE}_broken ne se charge pas : "
                              "module drimcheck_no_such_dependency introuvable")


def test_missing_function_is_a_harness_error_naming_it(probe):
    with pytest.raises(HarnessError) as err:
        _load_starter("proxy", f"{PROBE}:start_for_campaign")
    assert str(err.value) == f"simulateur proxy : le module {PROBE} n'a pas de fonction start_for_campaign"
    assert callable(_load_starter("proxy", f"{PROBE}:start"))


def test_campaign_refuses_to_start_any_simulator_when_one_cannot_be_loaded(probe, tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "SIMULATORS", (("igc", f"{PROBE}:start"),
                                                 ("whitelist", "simulators.no_such_simulator:start_for_campaign")))
    runtime = CampaignRuntime(config.parse(config.reference_text()), tmp_path / "run")
    with pytest.raises(HarnessError, match=r"^simulateur whitelist : module simulators\.no_such_simulator introuvable"):
        runtime.start_simulators()
    calls = sys.modules[PROBE].CALLS
    assert calls == [] and runtime.sims == {}
    monkeypatch.setattr(campaign, "SIMULATORS", (("igc", f"{PROBE}:start"),))
    runtime.start_simulators()  # the same probe, loadable, is started
    assert calls == [runtime]
