"""Reports of a run: results.json (versioned schema), junit.xml, report.html (French)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# Characters that XML 1.0 forbids (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF), plus DEL and
# the C1 controls, which XML tolerates but HTML does not: escaped as visible text in every report.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def safe_text(text: str) -> str:
    """`text` with every character a report cannot carry replaced by a visible escape (\\x01, \\ud800)."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       text)


def safe_tree(value: Any) -> Any:
    """A JSON-like structure with safe_text applied to every string (keys included)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_tree(k): safe_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_tree(v) for v in value]
    return value


from drimcheck.reports.html import render_html  # noqa: E402 - after the helpers junit.py imports
from drimcheck.reports.junit import render_junit  # noqa: E402
from drimcheck.results import RunResult  # noqa: E402


def write_all(result: RunResult, run_dir: Path) -> dict[str, Path]:
    """Write every report artefact; returns their paths. evidence/ is written during the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "results.json", "junit": run_dir / "junit.xml", "html": run_dir / "report.html"}
    data = safe_tree(result.to_dict())  # SUT strings may hold control characters or lone surrogates
    paths["json"].write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    paths["junit"].write_bytes(render_junit(result, run_dir))
    paths["html"].write_text(render_html(data, run_dir), encoding="utf-8")
    return paths
