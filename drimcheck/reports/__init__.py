"""Reports of a run: results.json (versioned schema), junit.xml, report.html (French)."""

from __future__ import annotations

import json
from pathlib import Path

from drimcheck.reports.html import render_html
from drimcheck.reports.junit import render_junit
from drimcheck.results import RunResult


def write_all(result: RunResult, run_dir: Path) -> dict[str, Path]:
    """Write every report artefact; returns their paths. evidence/ is written during the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "results.json", "junit": run_dir / "junit.xml", "html": run_dir / "report.html"}
    data = result.to_dict()
    paths["json"].write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    paths["junit"].write_bytes(render_junit(result))
    paths["html"].write_text(render_html(data), encoding="utf-8")
    return paths
