"""Static analysis as tests: ruff (lint), mypy (types) and import-linter (layers) find nothing.

The tools come with the project's [test] extra (pyproject.toml) and run from the project's venv, like the
pre-commit hooks (.pre-commit-config.yaml). Their configuration is in pyproject.toml and .importlinter; a
finding fails the test with the tool's own report."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The tool installed next to this interpreter (the venv of `pip install -e .[test]`)."""
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} not installed: pip install -e '.[test]' (pyproject.toml, [test] extra)"
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    proc = run(tool("ruff"), "check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All checks passed" in proc.stdout


def test_mypy_finds_nothing():
    # configuration in pyproject.toml: strict on the core and protocol modules, a baseline on the rest
    proc = run(tool("mypy"), "--cache-dir", str(REPO / ".mypy_cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found"), proc.stdout


def test_import_contracts_hold():
    proc = run(tool("lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout


def _imports_inside_functions(path: Path, package: str) -> list[tuple[str, str]]:
    """(importer, imported) of the first-party `from X import ...` statements inside a function of a module, whose
    importer does not import X at module level too (so only the function's import can link them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    in_functions = [node for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                    for node in ast.walk(fn) if isinstance(node, ast.ImportFrom)]
    elsewhere = {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and all(node is not n for n in in_functions)}
    return [(module, node.module) for node in in_functions
            if node.module and node.level == 0 and node.module.split(".")[0] == package and node.module not in elsewhere]


def test_import_contracts_see_imports_inside_functions(tmp_path):
    """An import that only a function body makes breaks a contract like any other (grimp reads every import
    statement): a deliberate violation, a contract forbidding in-function imports the code really makes, breaks."""
    found = sorted({pair for path in (REPO / "drimcheck").glob("*.py")
                    for pair in _imports_inside_functions(path, "simulators")})
    assert found, "no in-function import of simulators/ left in drimcheck/*.py to test with"
    found = found[:3]
    contracts = "".join(f"""
[importlinter:contract:inner-{i}]
name = deliberate violation {i}
type = forbidden
source_modules =
    {importer}
forbidden_modules =
    {imported}
""" for i, (importer, imported) in enumerate(found))
    config = tmp_path / "importlinter.ini"
    config.write_text("[importlinter]\nroot_packages =\n    drimcheck\n    simulators\n" + contracts, encoding="utf-8")
    proc = run(tool("lint-imports"), "--no-cache", "--config", str(config))
    assert proc.returncode != 0
    for i, (importer, imported) in enumerate(found):
        assert f"deliberate violation {i} BROKEN" in proc.stdout, proc.stdout
        assert f"{importer} -> {imported}" in proc.stdout, proc.stdout


def _importlinter() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter", encoding="utf-8")
    return parser


def test_no_contract_ignores_an_import():
    """The layers hold without exceptions: a violation is fixed by moving code, not listed."""
    parser = _importlinter()
    contracts = [name for name in parser.sections() if name.startswith("importlinter:contract:")]
    assert len(contracts) >= 5
    assert [name for name in contracts if parser.has_option(name, "ignore_imports")] == []


def test_every_drimcheck_module_sits_in_one_layer():
    """A new module of drimcheck/ must be placed in a layer of the contract (an unlisted module is unconstrained)."""
    layers = _importlinter()["importlinter:contract:drimcheck-layers"]["layers"]
    placed = [name.strip() for line in layers.splitlines() for name in re.split(r"[:|]", line) if name.strip()]
    assert len(placed) == len(set(placed)), placed
    package = REPO / "drimcheck"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    assert sorted(modules - set(placed)) == [], "modules in no layer of .importlinter"
    assert sorted(set(placed) - modules) == [], "layers naming no module"


def test_steps_use_only_the_step_services():
    """Step modules reach the runtime only through drimcheck.services.StepServices (the `campaign` fixture's type):
    every attribute they read on a `campaign` is one of its members."""
    from drimcheck.services import StepServices

    members = {name for cls in StepServices.__mro__ if cls.__module__ == "drimcheck.services"
               for name in vars(cls) if not name.startswith("_")}
    used: dict[str, str] = {}
    for path in sorted((REPO / "steps").glob("*.py")):
        if path.name.startswith("_"):  # the wiring (steps/_plugin.py) hands the runtime out: ScenarioHost
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name in ("campaign", "runtime"):
                used.setdefault(node.attr, f"{path.name}:{node.lineno}")
    assert used, "no use of the campaign found in steps/"
    assert {a: where for a, where in used.items() if a not in members} == {}
