"""Project rules that keep verdicts trustworthy: French features, tagged scenarios, independent checks."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from gherkin.parser import Parser
from projectfiles import git_files, project_files, walked_files

REPO = Path(__file__).resolve().parent.parent
FEATURES = sorted((REPO / "features").rglob("*.feature"))


def scenarios_of(path: Path):
    doc = Parser().parse(path.read_text(encoding="utf-8"))
    feature = doc["feature"]
    for child in feature["children"]:
        if "scenario" in child:
            yield feature, child["scenario"]
        for rule_child in child.get("rule", {}).get("children", []):
            if "scenario" in rule_child:
                yield feature, rule_child["scenario"]


def test_features_are_french_gherkin():
    assert FEATURES
    for path in FEATURES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.strip() == "# language: fr", path
        assert Parser().parse(path.read_text(encoding="utf-8"))["feature"]["language"] == "fr"


def test_every_scenario_carries_requirement_tags():
    for path in FEATURES:
        for feature, scenario in scenarios_of(path):
            tags = [t["name"] for t in scenario["tags"] + feature["tags"]]
            assert any(t.startswith("@req:") for t in tags), f"{path.name}: {scenario['name']} has no @req: tag"


def _modules_loaded_by(imports: str) -> set[str]:
    code = f"import sys, json\n{imports}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_checks_never_import_the_reference_drimbox():
    import drimcheck.checks as checks

    names = [f"drimcheck.checks.{m.name}" for m in pkgutil.iter_modules(checks.__path__)]
    loaded = _modules_loaded_by("\n".join(f"import {n}" for n in names))
    assert not [m for m in loaded if m.startswith("simulators.drimbox")]


def test_reference_drimbox_never_imports_the_harness():
    import simulators.drimbox as box

    names = [f"simulators.drimbox.{m.name}" for m in pkgutil.iter_modules(box.__path__)]
    assert "simulators.drimbox.__main__" in names and "simulators.drimbox.service" in names
    loaded = _modules_loaded_by("\n".join(f"import {n}" for n in names))
    leaked = [m for m in loaded if m.split(".")[0] in ("drimcheck", "fixtures", "steps")]
    assert not leaked, leaked


def test_every_mutant_declares_catalogued_requirements():
    from drimcheck import catalogue
    from simulators.drimbox import mutants

    cat = catalogue.load()
    for m in mutants.load().values():
        assert m.violates, m.id
        assert catalogue.unknown_ids(m.violates, cat) == [], m.id


def test_no_private_key_or_generated_certificate_is_tracked_by_git():
    import re

    pem_key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/]{40}")
    files = project_files(REPO)  # git ls-files, or the tree walked with .gitignore's exclusions (tarball)
    assert files
    for f in files:
        path = REPO / f
        assert not f.endswith((".key", ".p12", ".pfx")), f
        if path.is_file() and path.stat().st_size < 2_000_000:
            assert not pem_key.search(path.read_bytes()), f"{f} holds a private key"


# ------------------------------------------------------------------ project files without git


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_project_files_walk_the_tree_with_gitignore_exclusions_outside_git(tmp_path):
    """A tarball or another user's clone: no git answer, the same files as git would list."""
    _tree(tmp_path, {
        ".gitignore": "# comment\n.venv/\n*.pem\n!keep/public-*.pem\nruns/\n/top-only.txt\nbuild\n",
        "a.py": "", "top-only.txt": "", "sub/top-only.txt": "", "cert.pem": "", "keep/public-ca.pem": "",
        "keep/other.pem": "", ".venv/lib/x.py": "", "runs/1/report.html": "", "sub/runs/x": "", "build/y": "",
        "examples/.gitignore": "kit/\n", "examples/kit/ca.key": "", "examples/sut.toml": "",
        ".git/config": "",
    })
    expected = [".gitignore", "a.py", "examples/.gitignore", "examples/sut.toml", "keep/public-ca.pem",
                "sub/top-only.txt"]
    assert git_files(tmp_path) is None  # /tmp is no checkout: the walk is what the rules test rely on
    assert project_files(tmp_path) == expected
    assert walked_files(tmp_path) == expected


def test_project_files_walk_agrees_with_git_on_this_checkout():
    """Where git answers (a checkout of one's own), walking the tree gives exactly git's list: the
    fallback used from a tarball excludes what the repository's .gitignore files exclude, no more."""
    listed = git_files(REPO)
    if listed is None:
        pytest.skip("not a git checkout git accepts here (tarball or another user's clone)")
    assert walked_files(REPO) == listed


def test_cited_docs_and_sections_exist():
    """Every `docs/<file>` named in the project exists, and every `docs/<file>.md §N` has a `## N.` section."""
    import re

    cite = re.compile(r"docs/([\w.-]+\.(?:md|json))((?:,? ?§\d+)*)")
    missing = []
    for f in project_files(REPO):
        path = REPO / f
        if path.suffix not in (".py", ".md", ".toml", ".yml", ".json", ".feature", "") or not path.is_file():
            continue
        for m in cite.finditer(path.read_text(encoding="utf-8", errors="replace")):
            doc = REPO / "docs" / m.group(1)
            if not doc.is_file():
                missing.append(f"{f}: docs/{m.group(1)}")
                continue
            headings = doc.read_text(encoding="utf-8")
            for n in re.findall(r"§(\d+)", m.group(2)):
                if not re.search(rf"^## {n}\. ", headings, re.M):
                    missing.append(f"{f}: docs/{m.group(1)} §{n}")
    assert not missing, missing
