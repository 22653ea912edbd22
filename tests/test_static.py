"""Static analysis as tests: ruff (lint), mypy (types) and import-linter (layers) find nothing.

The tools come with the project's [test] extra (pyproject.toml) and run from the project's venv, like the
pre-commit hooks (.pre-commit-config.yaml). Their configuration is in pyproject.toml and .importlinter; a
finding fails the test with the tool's own report."""

from __future__ import annotations

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


def test_import_contracts_see_imports_inside_functions(tmp_path):
    """The reference DRIMbox's trust module imports the harness's whitelist verifier inside a function: without its
    `ignore_imports` line the contract breaks there (the former module-level independence test let it through)."""
    ignored = "simulators.drimbox.trust -> drimcheck.whitelist"
    config = (REPO / ".importlinter").read_text(encoding="utf-8")
    assert ignored in config
    stricter = tmp_path / "importlinter.ini"
    stricter.write_text("\n".join(line for line in config.splitlines() if line.strip() != ignored), encoding="utf-8")
    proc = run(tool("lint-imports"), "--no-cache", "--config", str(stricter))
    assert proc.returncode != 0
    assert "the reference DRIMbox imports nothing of the harness BROKEN" in proc.stdout, proc.stdout
    assert "simulators.drimbox.trust -> drimcheck.whitelist" in proc.stdout
