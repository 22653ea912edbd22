"""The requirement catalogue is valid data, and coverage is honest: automated = tagged in a feature AND judged by a check."""

from __future__ import annotations

import pytest

from drimcheck import catalogue
from drimcheck.catalogue import CatalogueError
from drimcheck.coverage import check_requirements, coverage_rows, feature_tags
from drimcheck.verdicts import Finding, Verdict


def test_catalogue_loads_with_unique_ids_and_a_version():
    cat = catalogue.load()
    assert cat.version and len(cat.ids()) == len(set(cat.ids())) > 20
    assert all(r.strength in ("required", "inferred") for r in cat.requirements)


def test_every_tag_and_every_check_names_a_catalogued_requirement():
    cat = catalogue.load()
    assert catalogue.unknown_ids(feature_tags()) == []
    assert catalogue.unknown_ids(check_requirements()) == []
    assert all(r.id in cat for r in cat.requirements)


def test_automated_requirements_have_no_not_tested_reason_and_others_have_one():
    for row in coverage_rows():
        if row["automated"]:
            assert not row["not_tested"], f"{row['id']} is automated but still says not tested"
        else:
            assert row["not_tested"], f"{row['id']} has no check and no not-tested reason"


def test_tagged_requirements_are_judged_by_some_check():
    assert set(feature_tags()) <= set(check_requirements())


def test_inferred_requirement_fail_becomes_warn_unless_strict():
    cat = catalogue.load()
    inferred = next(r.id for r in cat.requirements if r.inferred)
    required = next(r.id for r in cat.requirements if not r.inferred)
    f = cat.apply_strength(Finding(inferred, Verdict.FAIL, "x"), strict=False)
    assert f.verdict is Verdict.WARN and f.raw_verdict is Verdict.FAIL
    assert cat.apply_strength(Finding(inferred, Verdict.FAIL, "x"), strict=True).verdict is Verdict.FAIL
    assert cat.apply_strength(Finding(required, Verdict.FAIL, "x"), strict=False).verdict is Verdict.FAIL


SRC = "sources=[{ doc='rfc5280', section='§6.3' }]\n"


@pytest.mark.parametrize("text, message", [
    ("catalogue_version = '1'\n", "empty"),
    ("[[requirement]]\nid='X'\n", "catalogue_version"),
    ("catalogue_version='1'\n[[requirement]]\nid='X'\ntitle='t'\n" + SRC + "strength='maybe'\nactor='both'\narea='a'\n", "strength"),
    ("catalogue_version='1'\n" + ("[[requirement]]\nid='X'\ntitle='t'\n" + SRC + "strength='required'\nactor='both'\narea='a'\n") * 2, "twice"),
])
def test_malformed_catalogue_is_refused(text, message):
    with pytest.raises(CatalogueError, match=message):
        catalogue.parse(text)
