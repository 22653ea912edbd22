"""Every catalogue source names a real public document (registry data/documents.toml) and a section; no internal
shorthand (`seed §2.4`, `spec §7`, `[I]`, `[V-PoC]`) reaches a report."""

from __future__ import annotations

import re
import tomllib
from importlib import resources

import pytest

from drimcheck import catalogue
from drimcheck.catalogue import CatalogueError

SHORTHAND = [
    (re.compile(r"\bseed\b", re.I), "« seed » (guide d'intégration non nommé)"),
    (re.compile(r"\bspec\b\s*§?", re.I), "« spec » (note interne non publiée)"),
    (re.compile(r"\[(I|V|\?)\]"), "marqueur [I] / [V] / [?]"),
    (re.compile(r"\[V[- ][^\]]*\]"), "marqueur [V-…]"),
    (re.compile(r"\bDB0\s*§"), "§ de DB0 (document non public) sans document"),
    (re.compile(r"\bSECU-IG\b|\bPOC\b|\bDATA\s*:"), "clé de source interne"),
]


def _texts(cat):
    for r in cat.requirements:
        yield r.id, "source", r.source
        for c in r.sources:
            yield r.id, "section", c.section
        if r.inferred_from:
            yield r.id, "inferred_from", r.inferred_from


def _raw_requirements():
    text = resources.files("drimcheck").joinpath("data/requirements.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["requirement"]


def test_no_internal_shorthand_in_any_citation():
    bad = [f"{rid} ({where}) : {label} dans « {text[:80]} »"
           for rid, where, text in _texts(catalogue.load()) for rx, label in SHORTHAND if rx.search(text)]
    assert bad == []


def test_a_paragraph_sign_only_appears_in_a_section_of_a_named_document():
    """« § » in free text (inferred_from) would point into a document the reader cannot identify."""
    for entry in _raw_requirements():
        assert "§" not in entry.get("inferred_from", ""), entry["id"]
        assert "source" not in entry, f"{entry['id']} still has a free-text source"


def test_every_requirement_cites_at_least_one_document_with_a_section():
    cat = catalogue.load()
    ids = {d.id for d in cat.documents}
    for r in cat.requirements:
        assert r.sources, r.id
        for c in r.sources:
            assert c.doc in ids, f"{r.id}: unknown document {c.doc}"
            assert len(c.section.strip()) >= 3, f"{r.id}: citation of {c.doc} without a section"


def test_every_document_has_a_title_and_a_version_or_date_and_is_cited():
    cat = catalogue.load()
    cited = {c.doc for r in cat.requirements for c in r.sources}
    for d in cat.documents:
        assert d.title.strip() and d.publisher.strip(), d.id
        assert d.version or d.date, d.id
        assert d.date is None or re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", d.date), f"{d.id}: date {d.date}"
        assert d.url is None or d.url.startswith("https://"), d.id
        assert d.id in cited, f"{d.id} is registered but cited by no requirement"


def test_the_ans_trust_space_guide_is_cited_with_its_exact_title_version_and_date():
    guide = catalogue.load().document("ans-guide-edc")
    assert guide.title == "Guide d'intégration à l'Espace de Confiance DRIM-M"
    assert (guide.version, guide.date) == ("1.1", "2025-09-17")


def test_inferred_requirements_say_what_they_are_inferred_from():
    for r in catalogue.load().requirements:
        if r.inferred:
            assert r.inferred_from and len(r.inferred_from) > 20, r.id
            assert "exigence inférée :" in r.source, r.id


def test_the_rendered_source_names_each_document_and_section():
    cat = catalogue.load()
    r = cat.get("CLR-02")
    for c in r.sources:
        assert cat.document(c.doc).short in r.source and c.section in r.source


DOCS = catalogue.parse_documents('[[document]]\nid = "d1"\ntitle = "T"\nshort = "T"\npublisher = "P"\nversion = "1"\n')
REQ = "catalogue_version = '1'\n[[requirement]]\nid = 'X'\ntitle = 't'\nstrength = 'required'\nactor = 'both'\narea = 'a'\n"


@pytest.mark.parametrize("extra, message", [
    ("sources = [{ doc = 'nope', section = '§1' }]\n", "unknown document id 'nope'"),
    ("sources = [{ doc = 'd1' }]\n", "each source is"),
    ("sources = [{ doc = 'd1', section = ' ' }]\n", "each source is"),
    ("sources = []\n", "lacks sources"),
    ("source = 'spec §7'\nsources = [{ doc = 'd1', section = '§1' }]\n", "'source' is replaced"),
])
def test_malformed_citations_are_refused(extra, message):
    with pytest.raises(CatalogueError, match=re.escape(message)):
        catalogue.parse(REQ + extra, DOCS)


def test_an_inferred_requirement_without_inferred_from_is_refused():
    text = REQ.replace("'required'", "'inferred'") + "sources = [{ doc = 'd1', section = '§1' }]\n"
    with pytest.raises(CatalogueError, match="inferred_from"):
        catalogue.parse(text, DOCS)
    assert catalogue.parse(text + "inferred_from = 'de l’usage'\n", DOCS).get("X").inferred_from


@pytest.mark.parametrize("text, message", [
    ('[[document]]\nid = "d"\ntitle = "T"\nshort = "T"\npublisher = "P"\n', "a version or a date"),
    ('[[document]]\nid = "d"\nshort = "T"\npublisher = "P"\ndate = "2020"\n', "lacks title"),
    ('[[document]]\nid = "D 1"\ntitle = "T"\nshort = "T"\npublisher = "P"\ndate = "2020"\n', "id must be"),
    ('[[document]]\nid = "d"\ntitle = "T"\nshort = "T"\npublisher = "P"\ndate = "2020"\nisbn = "x"\n', "unknown field"),
    ("", "empty"),
])
def test_malformed_document_registry_is_refused(text, message):
    with pytest.raises(CatalogueError, match=message):
        catalogue.parse_documents(text)


def test_documents_cited_lists_sections_and_citing_requirements():
    cat = catalogue.load()
    docs = cat.documents_cited(["CLR-02", "CRT-03"])
    guide = next(d for d in docs if d["id"] == "ans-guide-edc")
    assert guide["cited_by"] == ["CRT-03", "CLR-02"]
    assert any("2.6" in s for s in guide["sections"]) and len(guide["sections"]) == len(set(guide["sections"]))
    assert {d["id"] for d in docs} == {"ans-guide-edc", "rfc5280", "rfc8555"}
    assert set(docs[0]) == {"id", "title", "publisher", "version", "date", "url", "note", "cited_by", "sections"}


def test_results_json_lists_the_documents_of_the_requirements_run():
    """A requirement a partial campaign did not run (NOT_RUN) brings no document; one without a check does."""
    from drimcheck.results import SCHEMA_VERSION, RunResult, ScenarioResult
    from drimcheck.verdicts import Finding, Verdict

    cat = catalogue.load()
    automated = set(cat.ids()) - {"PERF-01"}
    scenario = ScenarioResult(id="s", feature="f", feature_file="f.feature", name="n", requirements=["CLR-02"],
                              findings=[Finding("CLR-02", Verdict.PASS, "ok")])
    result = RunResult(run_id="r", started_at="t0", finished_at="t1", duration_s=1.0, strict=False, sut={},
                       catalogue=cat, scenarios=[scenario], automated_ids=automated)
    data = result.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    by_id = {d["id"]: d for d in data["documents"]}
    assert set(by_id) == {"ans-guide-edc", "rfc8555", "ans-drim-m-data"}  # CLR-02 (run) and PERF-01 (not tested)
    assert by_id["ans-drim-m-data"]["cited_by"] == ["PERF-01"] and by_id["rfc8555"]["cited_by"] == ["CLR-02"]
    assert by_id["ans-guide-edc"]["title"] == "Guide d'intégration à l'Espace de Confiance DRIM-M"
    assert by_id["rfc8555"]["url"] == "https://www.rfc-editor.org/rfc/rfc8555"
