#!/usr/bin/env python3
"""Lines of code per layer, the layers as .importlinter enforces them (docs/architecture.md quotes the table).

    python3 scripts/layer_lines.py            # Markdown table: layer, modules, lines, largest module
    python3 scripts/layer_lines.py --largest  # plus the largest function of each layer

Lines are physical lines of the .py files (docstrings and comments included); tests/, bench/ and examples/
are outside the layers. The drimcheck/ layers are read from the `drimcheck-layers` contract, so a module
moved from one layer to another is counted where the contract puts it.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: names of the drimcheck-layers contract's lines, top to bottom
DRIMCHECK_LAYERS = ("orchestration", "services", "checks", "protocols", "core")


def layers() -> dict[str, list[Path]]:
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter", encoding="utf-8")
    lines = [line for line in parser["importlinter:contract:drimcheck-layers"]["layers"].splitlines() if line.strip()]
    assert len(lines) == len(DRIMCHECK_LAYERS), "the drimcheck-layers contract changed: update DRIMCHECK_LAYERS"
    out: dict[str, list[Path]] = {}
    for title, line in zip(DRIMCHECK_LAYERS, lines, strict=True):
        files: list[Path] = []
        for name in (n.strip() for n in re.split(r"[:|]", line) if n.strip()):
            module, package = REPO / "drimcheck" / f"{name}.py", REPO / "drimcheck" / name
            files += [module] if module.exists() else sorted(package.rglob("*.py"))
        out[title] = files
    every = sorted((REPO / "simulators").rglob("*.py"))
    out["simulators (test bed)"] = [p for p in every if "drimbox" not in p.relative_to(REPO / "simulators").parts]
    out["reference DRIMbox"] = sorted((REPO / "simulators" / "drimbox").rglob("*.py"))
    out["fixtures"] = sorted((REPO / "fixtures").rglob("*.py"))
    out["steps"] = sorted((REPO / "steps").rglob("*.py"))
    return out


def count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def largest_function(files: list[Path]) -> tuple[int, str]:
    best = (0, "")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > best[0]:
                    best = (size, f"{path.relative_to(REPO)}:{node.name}")
    return best


def main(argv: list[str]) -> int:
    largest = "--largest" in argv
    head = "| layer | modules | lines | largest module |" + (" largest function |" if largest else "")
    print(head)
    print("|" + "---|" * head.count(" |"))
    total = 0
    for title, files in layers().items():
        sizes = {f: count(f) for f in files}
        lines = sum(sizes.values())
        total += lines
        big = max(sizes, key=lambda f: sizes[f])
        row = f"| {title} | {len(files)} | {lines:,} | {big.relative_to(REPO)} ({sizes[big]:,}) |"
        if largest:
            size, where = largest_function(files)
            row += f" {where} ({size}) |"
        print(row.replace(",", "\u202f"))
    print(f"| total | | {total:,} | |{' |' if largest else ''}".replace(",", "\u202f"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
