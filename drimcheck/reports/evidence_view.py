"""Readable views of evidence files, embedded in the self-contained HTML report.

Evidence files are written redacted by drimcheck.evidence; what is embedded here is read back with a size
cap, redacted once more (defence in depth: a report is shared more widely than the run directory), made
safe for HTML (control characters escaped) and cut to a display cap with a visible « tronqué » marker.
Only regular files under <run>/evidence/ are read (no symlink, no path outside the run directory).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from html import escape
from pathlib import Path
from typing import Any

READ_CAP = 1024 * 1024  # bytes read from one evidence file
TEXT_CAP = 12 * 1024  # characters shown for one body or text file
HEADERS_CAP = 60  # header lines shown per message
TOTAL_CAP = 3 * 1024 * 1024  # characters of evidence views embedded in one report


def _clean(text: str) -> str:
    from drimcheck.evidence import redact_text
    from drimcheck.reports import safe_text

    return safe_text(redact_text(text))


def _capped(text: str, cap: int = TEXT_CAP) -> str:
    """<pre> of a text, cut at `cap` characters with a visible marker."""
    text = _clean(text)
    if len(text) <= cap:
        return f"<pre>{escape(text)}</pre>"
    return (f"<pre>{escape(text[:cap])}</pre><p class=\"trunc\">… tronqué : {cap:,} caractères affichés sur "
            f"{len(text):,} (le fichier complet est dans le dossier evidence/).</p>").replace(",", "\u202f")


def safe_evidence_path(run_dir: Path, rel: str) -> Path | None:
    """The file an evidence reference names, if it is a regular file under <run>/evidence/ (else None)."""
    if not isinstance(rel, str) or not rel.startswith("evidence/") or "\\" in rel or "\x00" in rel:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    path = run_dir.joinpath(*parts)
    try:
        st = os.lstat(path)
        root = (run_dir / "evidence").resolve()
        if not stat.S_ISREG(st.st_mode) or root not in path.resolve().parents:
            return None
    except (OSError, ValueError):
        return None
    return path


def _read(path: Path) -> tuple[bytes, bool]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(READ_CAP + 1)
    return data[:READ_CAP], len(data) > READ_CAP


def _headers(headers: Any) -> str:
    if not isinstance(headers, list) or not headers:
        return ""
    rows = []
    for pair in headers[:HEADERS_CAP]:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            rows.append(f"{pair[0]}: {pair[1]}")
    more = len(headers) - HEADERS_CAP
    text = "\n".join(str(r) for r in rows) + (f"\n… tronqué : {more} en-têtes de plus" if more > 0 else "")
    return _capped(text, 4096)


def _body(body: Any) -> str:
    if not isinstance(body, dict) or not body.get("size"):
        return "<p class=\"small\">Corps : vide.</p>"
    size = body.get("size")
    note = " (déjà tronqué à l'enregistrement)" if body.get("truncated") else ""
    if isinstance(body.get("text"), str):
        text = body["text"]
        if text[:1] in "{[" and len(text) <= READ_CAP:
            try:  # JSON answers (HealthCheck, tokens...) shown indented
                text = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
            except (ValueError, RecursionError):
                pass
        return f"<p class=\"small\">Corps : {escape(str(size))} octets{note}</p>" + _capped(text)
    if isinstance(body.get("base64"), str):
        try:
            raw = base64.b64decode(body["base64"][: TEXT_CAP * 2], validate=False)
        except (binascii.Error, ValueError):
            raw = b""
        preview = "".join(chr(b) if 32 <= b < 127 or b in (9, 10, 13) else "·" for b in raw[:TEXT_CAP])
        return (f"<p class=\"small\">Corps binaire : {escape(str(size))} octets{note} — aperçu des octets "
                "imprimables (· = octet non imprimable)</p>" + _capped(preview, 2048))
    return f"<p class=\"small\">Corps : {escape(str(size))} octets.</p>"


def _tls(tls: Any) -> str:
    if not isinstance(tls, dict):
        return ""
    out = [f"<p>{escape(str(tls.get('version') or '—'))} · {escape(str(tls.get('cipher') or '—'))} · SNI "
           f"<code>{escape(_clean(str(tls.get('sni') or '—')))}</code></p>"]
    chain = tls.get("chain")
    if isinstance(chain, list) and chain:
        out.append("<table><tr><th>#</th><th>Sujet</th><th>Émetteur</th><th>Expire le</th></tr>")
        for i, cert in enumerate(chain[:10]):
            if isinstance(cert, dict):
                out.append(f"<tr><td>{i}</td><td>{escape(_clean(str(cert.get('subject', ''))))}</td>"
                           f"<td>{escape(_clean(str(cert.get('issuer', ''))))}</td>"
                           f"<td>{escape(str(cert.get('not_after', '')))}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _exchange(d: dict[str, Any]) -> str:
    req, resp = d.get("request") or {}, d.get("response") or {}
    out = ["<dl class=\"xch\">"]
    timing = [f"début {d.get('started_at')}" if d.get("started_at") else "",
              f"durée {d['elapsed_s']:.3f} s" if isinstance(d.get("elapsed_s"), (int, float)) else ""]
    out.append(f"<dt>Horodatage</dt><dd>{escape(' · '.join(t for t in timing if t) or '—')}</dd>")
    if isinstance(req, dict):
        target = f" (connexion à {req['connect_to']})" if req.get("connect_to") else ""
        out.append(f"<dt>Requête</dt><dd><code>{escape(_clean(str(req.get('method', ''))))} "
                   f"{escape(_clean(str(req.get('url', ''))))}</code>{escape(_clean(target))}"
                   f"{_headers(req.get('headers'))}{_body(req.get('body'))}</dd>")
    if d.get("error"):
        out.append(f"<dt>Erreur</dt><dd class=\"FAIL\">{escape(_clean(str(d['error'])))}</dd>")
    if isinstance(resp, dict) and resp:
        out.append(f"<dt>Réponse</dt><dd><strong>HTTP {escape(str(resp.get('status', '—')))}</strong>"
                   f"{_headers(resp.get('headers'))}{_body(resp.get('body'))}</dd>")
    if d.get("tls"):
        out.append(f"<dt>TLS</dt><dd>{_tls(d['tls'])}</dd>")
    if d.get("client_certificate"):
        out.append(f"<dt>Certificat client</dt><dd>{_capped(json.dumps(d['client_certificate'], ensure_ascii=False, indent=1), 2048)}</dd>")
    out.append("</dl>")
    return "".join(out)


def render_evidence(run_dir: Path | None, rel: str) -> str:
    """HTML view of one evidence file (request, response, TLS chain, timing for an exchange)."""
    path = safe_evidence_path(run_dir, rel) if run_dir is not None else None
    if path is None:
        return "<p class=\"small\">Fichier de preuve absent ou hors du dossier evidence/ : non intégré.</p>"
    try:
        data, cut = _read(path)
    except OSError as exc:
        return f"<p class=\"small\">Lecture impossible ({escape(exc.strerror or 'erreur')}).</p>"
    cut_note = (f"<p class=\"trunc\">… tronqué : seuls les {READ_CAP // 1024} premiers Kio du fichier ont été lus.</p>"
                if cut else "")
    if path.suffix == ".dcm" or data[128:132] == b"DICM":
        return (f"<p>Objet DICOM binaire de {path.stat().st_size} octets : non affiché ici "
                f"(ouvrir le fichier avec un lecteur DICOM).</p>")
    text = data.decode("utf-8", errors="replace")
    if path.suffix == ".json" and not cut:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and ("request" in doc and "response" in doc):
            return _exchange(doc)
        if doc is not None:
            return _capped(json.dumps(doc, ensure_ascii=False, indent=2))
    if path.suffix == ".hl7":
        text = text.replace("\r", "\n")
    return _capped(text) + cut_note
