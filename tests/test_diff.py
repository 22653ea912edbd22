"""`drimcheck diff RUN_A RUN_B`: regressions, fixes and other changes per requirement, exit 1 on a regression,
one French line and exit 2 on anything unreadable or malformed."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from drimcheck.cli import main


def run_main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def results(verdicts: dict[str, str], run_id: str = "r", catalogue: str = "2026.12.0") -> dict:
    """The parts of a results.json that diff reads (the real file has more; diff ignores it)."""
    return {"schema_version": "1.1", "harness": {"name": "drimcheck", "version": "0.1.0", "catalogue_version": catalogue},
            "run": {"id": run_id, "verdict": "CONFORME"},
            "requirements": [{"id": rid, "title": f"intitulé de {rid}", "verdict": v} for rid, v in verdicts.items()]}


def write_run(tmp_path: Path, name: str, data) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return d


def test_a_requirement_that_passed_and_now_fails_is_a_regression_exit_1(tmp_path):
    a = write_run(tmp_path, "a", results({"HLT-01": "PASS", "HLT-02": "PASS", "SRC-01": "FAIL", "KOS-01": "PASS"}, "a"))
    b = write_run(tmp_path, "b", results({"HLT-01": "PASS", "HLT-02": "FAIL", "SRC-01": "PASS", "KOS-01": "ERROR"}, "b"))
    code, out, err = run_main("diff", str(a), str(b))
    assert code == 1 and err == ""
    regressions = out.split("Régressions (2) :")[1].split("Corrigées")[0]
    assert "HLT-02   conforme → non conforme — intitulé de HLT-02" in regressions
    assert "KOS-01   conforme → erreur d'exécution" in regressions and "HLT-01" not in out
    assert "Corrigées (1) :\n  SRC-01   non conforme → conforme" in out
    assert out.rstrip().endswith("Verdict : RÉGRESSION (2 exigences)")


def test_fixes_and_other_changes_exit_0_and_json_has_a_verdict(tmp_path):
    a = write_run(tmp_path, "a", results({"HLT-01": "FAIL", "HLT-02": "PASS", "HLT-03": "NOT_RUN", "OLD-01": "PASS"}))
    b = write_run(tmp_path, "b", results({"HLT-01": "PASS", "HLT-02": "WARN", "HLT-03": "FAIL", "NEW-01": "PASS"},
                                         catalogue="2026.12.1"))
    code, out, _ = run_main("diff", str(a), str(b / "results.json"), "--json")  # a directory or the file itself
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "SANS RÉGRESSION" and doc["regressed"] == []
    assert [r["id"] for r in doc["fixed"]] == ["HLT-01"]
    changed = {r["id"]: (r["before"], r["after"]) for r in doc["changed"]}
    assert changed == {"HLT-02": ("PASS", "WARN"), "HLT-03": ("NOT_RUN", "FAIL"), "NEW-01": (None, "PASS"),
                       "OLD-01": ("PASS", None)}
    assert doc["run_a"]["catalogue_version"] == "2026.12.0" and doc["run_b"]["catalogue_version"] == "2026.12.1"
    code, out, _ = run_main("diff", str(a), str(b))
    assert code == 0 and "n'ont pas la même version du catalogue" in out and "Verdict : SANS RÉGRESSION" in out


def test_identical_runs_have_no_change(tmp_path):
    a = write_run(tmp_path, "a", results({"HLT-01": "PASS"}))
    code, out, _ = run_main("diff", str(a), str(a), "--json")
    assert code == 0 and json.loads(out) | {"run_a": None, "run_b": None} == {
        "verdict": "SANS RÉGRESSION", "run_a": None, "run_b": None, "regressed": [], "fixed": [], "changed": []}


BAD_INPUTS = [
    ("not json", "{", "JSON invalide"),
    ("an array", "[1, 2]", "pas un results.json de drimcheck"),
    ("no requirements", json.dumps({"run": {}}), "« requirements » absent"),
    ("requirements not a list", json.dumps({"requirements": {"HLT-01": "PASS"}}), "« requirements » absent"),
    ("requirement without id", json.dumps({"requirements": [{"verdict": "PASS"}]}), "exigence n° 1 sans identifiant"),
    ("unknown verdict", json.dumps({"requirements": [{"id": "HLT-01", "verdict": "OK"}]}), "verdict inconnu"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "JSON invalide"),
]


@pytest.mark.parametrize("what,text,fragment", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_malformed_results_are_one_french_line_exit_2(tmp_path, what, text, fragment):
    good = write_run(tmp_path, "good", results({"HLT-01": "PASS"}))
    bad = write_run(tmp_path, "bad", text)
    for args in ((str(good), str(bad)), (str(bad), str(good))):
        code, out, err = run_main("diff", *args)
        assert code == 2 and out == "", (what, out)
        assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err, err


def test_unreadable_inputs_exit_2(tmp_path):
    good = write_run(tmp_path, "good", results({"HLT-01": "PASS"}))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "results.json").write_bytes(b'{"requirements": [{"id": "\xe9"}]}')
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:  # sparse: 65 MiB of nothing on disk
        f.truncate(65 * 1024 * 1024)
    cases = [(empty_dir, "fichier introuvable"), (tmp_path / "absent", "fichier introuvable"),
             (tmp_path / "latin1", "n'est pas encodé en UTF-8"), (huge, "fichier trop volumineux"),
             (Path("/dev/zero"), "fichier trop volumineux")]
    for path, fragment in cases:
        code, out, err = run_main("diff", str(good), str(path))
        assert code == 2 and out == "" and fragment in err and len(err.strip().splitlines()) == 1, (path, err)


def test_two_real_campaign_results_compare(tmp_path):
    """The fixture format is the real one: a results.json as the reports write it is read without complaint."""
    from drimcheck.commands.diff import load_run

    schema = json.loads((Path(__file__).resolve().parent.parent / "docs" / "results.schema.json").read_text())
    assert {"id", "title", "verdict"} <= set(schema["properties"]["requirements"]["items"]["required"])
    verdicts = schema["properties"]["requirements"]["items"]["properties"]["verdict"]["enum"]
    run = write_run(tmp_path, "a", results({f"R-{i}": v for i, v in enumerate(verdicts)}))
    assert [r["verdict"] for r in load_run(run)["requirements"].values()] == verdicts
