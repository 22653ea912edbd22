"""The defect taxonomy (drimcheck/data/coverage.toml, issue 9): complete, and naming only real, tagged scenarios."""

from __future__ import annotations

from pathlib import Path

from drimcheck.coverage import AXIS_KINDS, cell_kind, coverage_rows, load_taxonomy, render_taxonomy, scenario_index

REPO = Path(__file__).resolve().parents[1]
AXES = {"elements", "sequences", "contenu", "usage", "ressemblance", "temps"}


def test_the_six_axes_are_described() -> None:
    axes = load_taxonomy()["axes"]
    assert set(axes) == AXES
    assert all(a["nom"] and a["description"] for a in axes.values())


def test_every_automated_requirement_has_all_six_axes() -> None:
    tax = load_taxonomy()["exigence"]
    automated = {r["id"] for r in coverage_rows() if r["automated"]}
    assert automated, "no automated requirement?"
    assert sorted(automated - set(tax)) == [], "automated requirements without a taxonomy"
    assert sorted(set(tax) - {r["id"] for r in coverage_rows()}) == [], "taxonomy of an unknown requirement"
    for rid in automated:
        cells = tax[rid]
        assert set(cells) == AXES, f"{rid}: axes {sorted(cells)}"
        for axis, cell in cells.items():
            kind = cell_kind(cell)
            assert kind in AXIS_KINDS, f"{rid}/{axis}: exactly one of {AXIS_KINDS} expected, got {sorted(cell)}"
            if kind == "scenarios":
                assert cell["scenarios"] and cell.get("note"), f"{rid}/{axis}: scenarios and a note"
            else:
                assert len(cell[kind]) >= 10, f"{rid}/{axis}: a reason is a sentence"


def test_every_named_scenario_exists_and_is_tagged_with_the_requirement() -> None:
    index = scenario_index()
    problems = []
    for rid, cells in load_taxonomy()["exigence"].items():
        for axis, cell in cells.items():
            for ref in cell.get("scenarios", []):
                if ref not in index:
                    problems.append(f"{rid}/{axis}: scénario introuvable « {ref} »")
                elif rid not in index[ref]:
                    problems.append(f"{rid}/{axis}: « {ref} » ne porte pas @req:{rid} ({sorted(index[ref])})")
    assert problems == []


def test_scenario_index_reads_tags_and_outlines() -> None:
    index = scenario_index()
    ref = "sante/healthcheck.feature: Arrêt puis redémarrage de chaque PACS d'une DRIMbox mutualisée"
    assert index[ref] == {"HLT-02", "HLT-03", "HLT-04", "HLT-05", "HLT-06"}


def test_rendering_names_every_requirement_and_the_gaps() -> None:
    text = render_taxonomy()
    tax = load_taxonomy()["exigence"]
    assert all(rid in text for rid in tax)
    assert f"{6 * len(tax)} axes" in text
    gaps = [(rid, axis) for rid, axes in tax.items() for axis, entry in axes.items() if "a_couvrir" in entry]
    assert ("À COUVRIR" in text) == bool(gaps)
    assert f"{len(gaps)} à couvrir" in text


def test_docs_coverage_md_embeds_the_current_taxonomy() -> None:
    doc = (REPO / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert render_taxonomy(markdown=True).strip() in doc, "docs/coverage.md is stale: regenerate its taxonomy section"
