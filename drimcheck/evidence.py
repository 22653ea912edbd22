"""Evidence: every exchange with the DUT is written to disk, redacted, and referenced by findings."""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path
from typing import Any

SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
SECRET_FIELDS = re.compile(
    r'("(?:access_token|refresh_token|id_token|subject_token|actor_token|client_secret|password|secret|token)"\s*:\s*)"[^"]*"',
    re.IGNORECASE,
)
SECRET_FORM = re.compile(
    r"((?:^|[&?\"])(?:access_token|refresh_token|id_token|subject_token|actor_token|client_secret|password|token|code)=)"
    r'[^&#"\s]*',  # stops at a quote or a space too: a URL inside a JSON document stays valid JSON
    re.IGNORECASE,
)
PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.DOTALL)
REDACTED = "[REDACTED]"
MAX_BODY = 256 * 1024  # bodies larger than this are truncated in evidence (the size is kept)


def redact_text(text: str) -> str:
    """Remove private keys, tokens and passwords from a text body."""
    text = PRIVATE_KEY.sub(f"-----{REDACTED} PRIVATE KEY-----", text)
    text = SECRET_FIELDS.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    return SECRET_FORM.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_headers(headers: list[tuple[str, str]] | dict[str, str]) -> list[list[str]]:
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    for k, v in items:
        if k.lower() in SECRET_HEADERS:
            scheme = v.split(" ", 1)[0] if " " in v else ""
            v = f"{scheme} {REDACTED}".strip()
        out.append([k, v])
    return out


def body_for_evidence(body: bytes | None, content_type: str = "") -> dict[str, Any]:
    """A JSON-safe, redacted view of a body: text when it decodes, base64 otherwise; truncated when large."""
    if not body:
        return {"size": 0}
    view: dict[str, Any] = {"size": len(body)}
    chunk = body[:MAX_BODY]
    if len(body) > MAX_BODY:
        view["truncated"] = True
    binary = "dicom" in content_type or "octet-stream" in content_type
    try:
        if binary:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "binary content type")
        view["text"] = redact_text(chunk.decode("utf-8"))
    except UnicodeDecodeError:
        view["base64"] = base64.b64encode(chunk).decode("ascii")
    return view


class EvidenceStore:
    """Writes evidence files under <run>/evidence/<scope>/, numbered in order; thread-safe."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.root = run_dir / "evidence"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._scope = "campaign"
        self._counters: dict[str, int] = {}

    def set_scope(self, scope: str) -> None:
        with self._lock:
            self._scope = re.sub(r"[^A-Za-z0-9_.-]+", "-", scope).strip("-")[:120] or "scope"

    def _next_path(self, label: str, suffix: str, scope: str | None = None) -> Path:
        with self._lock:
            scope = scope or self._scope  # a fixed scope (e.g. "campaign" for hooks) whatever scenario runs
            n = self._counters.get(scope, 0) + 1
            self._counters[scope] = n
            directory = self.root / scope
        directory.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "item"
        return directory / f"{n:03d}-{safe}{suffix}"

    def write_json(self, label: str, data: Any) -> str:
        """Store a JSON document; returns its path relative to the run directory (as cited in findings)."""
        path = self._next_path(label, ".json")
        text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
        path.write_text(redact_text(text), encoding="utf-8")
        return str(path.relative_to(self.run_dir))

    def write_bytes(self, label: str, data: bytes, suffix: str) -> str:
        path = self._next_path(label, suffix)
        path.write_bytes(data)
        return str(path.relative_to(self.run_dir))

    def write_text(self, label: str, text: str, suffix: str = ".txt", *, scope: str | None = None) -> str:
        """scope: file under evidence/<scope>/ instead of the current scenario's (e.g. "campaign")."""
        path = self._next_path(label, suffix, scope)
        path.write_text(redact_text(text), encoding="utf-8")
        return str(path.relative_to(self.run_dir))
