"""The selftest's judgement: golden must pass, each mutant must fail on its own requirements only;
a campaign that misbehaves is run again alone, and both attempts are reported."""

from __future__ import annotations

import json

import pytest

from drimcheck import selftest
from drimcheck.selftest import CampaignOutcome
from simulators.drimbox.mutants import Mutant

AUTOMATED = ["HLT-02", "CRT-01"]
MUTANTS = [Mutant("m-up", "toujours UP", ("HLT-02",)), Mutant("m-cert", "mauvais certificat", ("CRT-01",))]


def outcome(label, *, failed=(), errored=(), passed=AUTOMATED, exit_code=1):
    failed, errored = set(failed), set(errored)
    return CampaignOutcome(label, exit_code, 1.0, failed=failed, errored=errored,
                           passed=set(passed) - failed - errored)


def test_expected_outcomes():
    golden = outcome("golden", failed=(), exit_code=0)
    assert selftest._as_expected(golden, None, AUTOMATED)
    assert not selftest._as_expected(outcome("golden", failed=("CRT-01",)), None, AUTOMATED)
    assert selftest._as_expected(outcome("m-up", failed=("HLT-02",)), MUTANTS[0], AUTOMATED)
    assert not selftest._as_expected(outcome("m-up", failed=()), MUTANTS[0], AUTOMATED)  # not killed
    assert not selftest._as_expected(outcome("m-up", failed=("HLT-02", "CRT-01")), MUTANTS[0], AUTOMATED)  # too broad
    assert not selftest._as_expected(outcome("m-up", failed=("HLT-02",), errored=("CRT-01",)), MUTANTS[0], AUTOMATED)


@pytest.fixture
def fake_campaigns(monkeypatch):
    """Replace real campaigns by scripted outcomes: {label: [first attempt, retry]}."""
    script: dict[str, list[CampaignOutcome]] = {}
    calls: list[list[str]] = []

    def run(plans, jobs, env):
        calls.append([p.label for p in plans])
        plans_seen.extend(plans)
        return {p.label: script[p.label].pop(0) for p in plans}

    plans_seen: list = []

    monkeypatch.setattr(selftest, "_run_campaigns", run)
    monkeypatch.setattr(selftest, "_make_key_pool", lambda directory, jobs: None)
    monkeypatch.setattr(selftest, "coverage_rows", lambda: [{"id": r, "automated": True} for r in AUTOMATED])
    monkeypatch.setattr("simulators.drimbox.mutants.load", lambda: {m.id: m for m in MUTANTS})
    return script, calls


def test_flaky_campaign_is_rerun_alone_and_both_attempts_are_reported(tmp_path, fake_campaigns):
    script, calls = fake_campaigns
    script["golden"] = [outcome("golden", exit_code=0)]
    script["m-up"] = [outcome("m-up", failed=("HLT-02",), errored=("CRT-01",)), outcome("m-up", failed=("HLT-02",))]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    assert selftest.run_selftest(tmp_path, jobs=2) == 0
    assert calls == [["golden", "m-cert", "m-up"], ["m-up"]]  # mutants in id order
    report = json.loads((tmp_path / "selftest.json").read_text())
    entry = next(m for m in report["mutants"] if m["id"] == "m-up")
    assert entry["killed"] and entry["unexpected_failures"] == []
    assert entry["first_attempt"]["errored_requirements"] == ["CRT-01"]
    assert report["passed"] and {r["id"]: r["killing_mutants"] for r in report["requirements"]}["CRT-01"] == ["m-cert"]


def test_a_mutant_that_is_never_killed_fails_the_selftest_and_leaves_its_requirement_without_killer(tmp_path, fake_campaigns):
    script, _ = fake_campaigns
    script["golden"] = [outcome("golden", exit_code=0)]
    script["m-up"] = [outcome("m-up"), outcome("m-up")]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    assert selftest.run_selftest(tmp_path, jobs=2) == 1
    report = json.loads((tmp_path / "selftest.json").read_text())
    assert not report["passed"]
    assert next(m for m in report["mutants"] if m["id"] == "m-up")["killed"] is False
    killers = {r["id"]: r["killing_mutants"] for r in report["requirements"]}
    assert killers["HLT-02"] == []


def test_golden_failure_fails_the_selftest(tmp_path, fake_campaigns):
    script, _ = fake_campaigns
    script["golden"] = [outcome("golden", failed=("CRT-01",)), outcome("golden", failed=("CRT-01",))]
    script["m-up"] = [outcome("m-up", failed=("HLT-02",))]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    assert selftest.run_selftest(tmp_path, jobs=2) == 1
    report = json.loads((tmp_path / "selftest.json").read_text())
    assert report["golden"]["passed"] is False and "CRT-01" in report["golden"]["failures"]


def test_targeted_matrix_runs_each_mutant_on_its_own_requirements_and_full_on_every_scenario(tmp_path, fake_campaigns):
    script, _ = fake_campaigns
    for full in (False, True):
        script["golden"] = [outcome("golden", exit_code=0)]
        script["m-up"] = [outcome("m-up", failed=("HLT-02",))]
        script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
        assert selftest.run_selftest(tmp_path / str(full), jobs=2, full=full) == 0
        report = json.loads((tmp_path / str(full) / "selftest.json").read_text())
        assert report["matrix"] == ("full" if full else "targeted")
        scenarios = {m["id"]: m["scenarios"] for m in report["mutants"]}
        assert scenarios == ({"m-up": "all", "m-cert": "all"} if full else {"m-up": ["HLT-02"], "m-cert": ["CRT-01"]})


def test_plans_pass_the_declared_requirements_as_req_options(tmp_path):
    plans = selftest._plans(tmp_path, MUTANTS, full=False, golden=True)
    assert [(p.label, p.reqs) for p in plans] == [("golden", ()), ("m-up", ("HLT-02",)), ("m-cert", ("CRT-01",))]
    assert all(p.reqs == () for p in selftest._plans(tmp_path, MUTANTS, full=True, golden=False))


def test_shards_split_the_mutants_and_combine_judges_them_as_one_selftest(tmp_path, fake_campaigns):
    script, calls = fake_campaigns
    script["golden"] = [outcome("golden", exit_code=0)]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    script["m-up"] = [outcome("m-up", failed=("HLT-02",))]
    # a shard alone does not apply the "every requirement has a killer" rule: it passes on its own mutants
    assert selftest.run_selftest(tmp_path / "s1", jobs=2, shard=(1, 2)) == 0
    assert selftest.run_selftest(tmp_path / "s2", jobs=2, shard=(2, 2)) == 0
    assert calls == [["golden", "m-cert"], ["m-up"]]  # sorted by id, golden in shard 1 only
    assert selftest.combine(tmp_path / "all", [tmp_path / "s1", tmp_path / "s2"]) == 0
    combined = json.loads((tmp_path / "all" / "selftest.json").read_text())
    assert combined["passed"] and combined["combined_from"] == ["1/2", "2/2"]
    assert {r["id"]: r["killing_mutants"] for r in combined["requirements"]} == {"HLT-02": ["m-up"], "CRT-01": ["m-cert"]}
    # one shard missing: a usage error, not a pass
    assert selftest.combine(tmp_path / "half", [tmp_path / "s1"]) == 2


def test_combined_shards_fail_when_a_requirement_is_left_without_killer(tmp_path, fake_campaigns):
    script, _ = fake_campaigns
    script["golden"] = [outcome("golden", exit_code=0)]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    script["m-up"] = [outcome("m-up"), outcome("m-up")]  # not killed, even alone
    assert selftest.run_selftest(tmp_path / "s1", jobs=2, shard=(1, 2)) == 0
    assert selftest.run_selftest(tmp_path / "s2", jobs=2, shard=(2, 2)) == 1
    assert selftest.combine(tmp_path / "all", [tmp_path / "s1", tmp_path / "s2"]) == 1
    combined = json.loads((tmp_path / "all" / "selftest.json").read_text())
    assert {r["id"]: r["killing_mutants"] for r in combined["requirements"]}["HLT-02"] == []


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "/2"])
def test_bad_shard_is_refused(text):
    with pytest.raises(ValueError):
        selftest.parse_shard(text)


def test_a_known_gap_is_reported_not_failed_but_a_failure_outside_its_declaration_still_fails(tmp_path, monkeypatch,
                                                                                             fake_campaigns):
    script, calls = fake_campaigns
    gap = Mutant("m-gap", "lacune", ("CRT-01",), known_gap="aucun scénario ne le provoque")
    monkeypatch.setattr("simulators.drimbox.mutants.load", lambda: {m.id: m for m in MUTANTS + [gap]})
    script["golden"] = [outcome("golden", exit_code=0)]
    script["m-up"] = [outcome("m-up", failed=("HLT-02",))]
    script["m-cert"] = [outcome("m-cert", failed=("CRT-01",))]
    script["m-gap"] = [outcome("m-gap")]  # not caught: expected, no retry
    assert selftest.run_selftest(tmp_path / "a", jobs=2) == 0
    assert calls == [["golden", "m-cert", "m-gap", "m-up"]]
    report = json.loads((tmp_path / "a" / "selftest.json").read_text())
    assert report["known_gaps"] == {"total": 1, "still_missed": ["m-gap"], "now_caught": []}
    # the gap closes: reported as caught, counts as a killer
    script.update(golden=[outcome("golden", exit_code=0)], **{"m-up": [outcome("m-up", failed=("HLT-02",))],
                  "m-cert": [outcome("m-cert", failed=("CRT-01",))], "m-gap": [outcome("m-gap", failed=("CRT-01",))]})
    assert selftest.run_selftest(tmp_path / "b", jobs=2) == 0
    report = json.loads((tmp_path / "b" / "selftest.json").read_text())
    assert report["known_gaps"]["now_caught"] == ["m-gap"]
    # a gap that makes an undeclared requirement FAIL is a defect of the declaration or of a check
    script.update(golden=[outcome("golden", exit_code=0)], **{"m-up": [outcome("m-up", failed=("HLT-02",))],
                  "m-cert": [outcome("m-cert", failed=("CRT-01",))],
                  "m-gap": [outcome("m-gap", failed=("HLT-02",)), outcome("m-gap", failed=("HLT-02",))]})
    assert selftest.run_selftest(tmp_path / "c", jobs=2) == 1
