"""Evidence: every exchange with the DUT is written to disk, redacted, and referenced by findings.

Redaction (``redact_text``, ``redact_bytes``, ``redact_url``, ``redact_value``) removes every credential a
campaign handles, wherever it lands: private keys, OAuth tokens and JWTs, passwords and client secrets
(JSON fields, form fields, URL queries, HTTP headers), the password of ``user:pw@`` in URLs, and the
signature of SAML assertions (the VIHF sent to the DMP is a bearer credential: without its SignatureValue
it is not). A redaction marker keeps the size and the SHA-256 of what it replaces, so two pieces of
evidence can still be matched. During a campaign checks judge the parsed exchanges kept in memory by the
simulators (e.g. ``DmpExchange.request.vihf``); what each judged call read is also stored, value by value
redacted, as ``NNN-judgement.json`` (``drimcheck.checks``, ``drimcheck.codec``), and ``drimcheck rejudge``
judges it again. Where a verdict rests on a secret (a VIHF's SignatureValue), the record keeps the judged
fact (the signature's verification result), never the secret.

Files: the evidence tree is private to the user (directories 0700, files 0600, whatever the umask).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
_KEYS = (r"access_token|refresh_token|id_token|subject_token|actor_token|client_secret|client_assertion|assertion"
         r"|password|passwd|secret|token|code_verifier|api_key")
SECRET_FIELDS = re.compile(rf'("(?:{_KEYS})"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
# the same fields in a JSON document embedded in a JSON string (quotes escaped once)
SECRET_FIELDS_ESCAPED = re.compile(rf'(\\"(?:{_KEYS})\\"\s*:\s*)\\"[^"\\]*\\"', re.IGNORECASE)
# form fields and URL query parameters (name=value); ``code`` only after ?, & or " (not "exit code=3")
SECRET_FORM = re.compile(
    rf"(?<![A-Za-z0-9_-])((?:{_KEYS}|code|id_token_hint)=)"
    r'[^&#"\s]*',  # stops at a quote or a space too: a URL inside a JSON document stays valid JSON
    re.IGNORECASE,
)
PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----(?:.*?-----END \1PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)", re.DOTALL)
# HTTP headers written as text ("Authorization: Basic ...") or as JSON pairs (["Authorization", "Basic ..."])
AUTH_TEXT = re.compile(r"(?im)^([ \t]*(?:proxy-)?authorization[ \t]*:[ \t]*)([A-Za-z][\w.+-]*)[ \t]+\S[^\r\n]*")
AUTH_PAIR = re.compile(r'("(?:proxy-)?authorization"\s*[,:]\s*")([A-Za-z][\w.+-]*) [^"]*"', re.IGNORECASE)
OPAQUE_TEXT = re.compile(r"(?im)^([ \t]*(?:cookie|set-cookie|x-api-key)[ \t]*:[ \t]*)\S[^\r\n]*")
OPAQUE_PAIR = re.compile(r'("(?:cookie|x-api-key)"\s*[,:]\s*")(?!\[REDACTED\]")[^"]*"', re.IGNORECASE)
# userinfo of a URL: scheme://user:password@host
URL_USERINFO = re.compile(r"(://)([^\s/?#@:\"'<>\\]*):([^\s/?#@\"'<>\\]+)@")
# JWS/JWT compact serialisation: three base64url parts, the first one a JSON header (whose base64url
# starts with e: "{", I: " ", C: "\n" or "\t", D: "\r")
JWT = re.compile(r"(?<![A-Za-z0-9_-])([eICD][A-Za-z0-9_-]{7,}+)\.([A-Za-z0-9_-]{2,}+)\.([A-Za-z0-9_-]*+)")
SAML_ASSERTION_START = re.compile(r"<(?:([A-Za-z_][\w.-]*):)?Assertion[\s>/]")
SIGNATURE_VALUE = re.compile(r"(<(?:[A-Za-z_][\w.-]*:)?SignatureValue\b[^>]*>)([^<]*)")
XML_PASSWORD = re.compile(r"(<(?:[A-Za-z_][\w.-]*:)?Password\b[^>]*>)([^<]*)")
REDACTED = "[REDACTED]"
MAX_BODY = 256 * 1024  # bodies larger than this are truncated in evidence (the size is kept)
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def marker(secret: str, what: str = "") -> str:
    """``[REDACTED <what> size=N sha256=HEX]``: identifies the secret without revealing it."""
    digest = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
    return f"[REDACTED{' ' + what if what else ''} size={len(secret)} sha256={digest}]"


def _is_jwt(header_b64: str) -> bool:
    try:
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict)


def _redact_jwt(m: re.Match[str]) -> str:
    return marker(m.group(0), "jwt") if _is_jwt(m.group(1)) else m.group(0)


def _redact_signature_value(m: re.Match[str]) -> str:
    value: str = m.group(2)
    if not value.strip() or value.startswith("[REDACTED"):
        return m.group(0)
    return m.group(1) + marker(re.sub(r"\s|\\[nrt]", "", value), "SAML signature")


def _assertion_end(text: str, start: re.Match[str]) -> int:
    prefix = start.group(1)
    close = f"</{prefix}:Assertion" if prefix else "</Assertion"
    end = text.find(close, start.end())
    return len(text) if end < 0 else end  # truncated evidence: up to the end


def redact_saml(text: str) -> str:
    """Replace the SignatureValue of every SAML assertion (the VIHF) by a marker; the rest stays readable.

    Without its signature an assertion is no credential, while its issuer, subject and attributes stay in
    the evidence for the reader. Other XML signatures (signed documents, whitelists) are kept: they are not
    credentials, and a reader may want to verify them.
    """
    if "Assertion" not in text:
        return text
    out, pos = [], 0
    for start in SAML_ASSERTION_START.finditer(text):
        if start.start() < pos:  # nested in an assertion already handled
            continue
        end = _assertion_end(text, start)
        body = SIGNATURE_VALUE.sub(_redact_signature_value, text[start.start():end])
        out += [text[pos:start.start()], body]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_url(url: str) -> str:
    """A URL without credentials: ``user:pw@`` becomes ``user:[REDACTED]@``, secrets in its query are redacted."""
    return redact_text(url) if url else url


def redact_text(text: str) -> str:
    """Remove private keys, SAML signatures, JWTs, tokens, passwords and URL passwords from a text."""
    if not text:
        return text
    text = PRIVATE_KEY.sub(f"-----{REDACTED} PRIVATE KEY-----", text)
    text = redact_saml(text)
    text = XML_PASSWORD.sub(lambda m: m.group(1) + (REDACTED if m.group(2) else ""), text)
    text = JWT.sub(_redact_jwt, text)
    text = URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    text = AUTH_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)} {REDACTED}", text)
    text = AUTH_PAIR.sub(lambda m: f'{m.group(1)}{m.group(2)} {REDACTED}"', text)
    text = OPAQUE_TEXT.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = OPAQUE_PAIR.sub(lambda m: f'{m.group(1)}{REDACTED}"', text)
    text = SECRET_FIELDS.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = SECRET_FIELDS_ESCAPED.sub(lambda m: f'{m.group(1)}\\"{REDACTED}\\"', text)
    return SECRET_FORM.sub(_redact_form, text)


def _redact_form(m: re.Match[str]) -> str:
    if m.group(1).lower() == "code=" and m.start() > 0 and m.string[m.start() - 1] not in "&?\"\n":
        return m.group(0)
    return f"{m.group(1)}{REDACTED}"


def redact_bytes(data: bytes) -> bytes:
    """``redact_text`` on raw bytes (MIME, XML, HL7...): byte for byte outside what is redacted."""
    if not data:
        return data
    return redact_text(data.decode("latin-1")).encode("latin-1")


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


# a field named like a secret, alone or as a suffix (dicomweb_password, psc_client_secret, client-secret...)
_SECRET_KEY = re.compile(rf"^(?:[A-Za-z0-9]+[_-])*(?:{_KEYS}|client-secret)$", re.IGNORECASE)


def secret_key(name: str) -> bool:
    """A field or key named like a secret (``dicomweb_password``, ``client_secret``, ``access_token``...)."""
    return bool(_SECRET_KEY.match(name))


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with every string redacted and secret-named string fields replaced."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(v, str) and v and isinstance(k, str) and _SECRET_KEY.match(k)
                    else redact_value(v)) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


def _redact_header(name: str, value: str) -> str:
    low = name.lower()
    if low in ("authorization", "proxy-authorization"):
        scheme, sep, _ = value.strip().partition(" ")
        return f"{scheme} {REDACTED}" if sep and re.fullmatch(r"[A-Za-z][\w.+-]*", scheme) else REDACTED
    if low == "set-cookie":  # keep the cookie's name and attributes (Secure, HttpOnly...), not its value
        cookie, sep, attributes = value.partition(";")
        name_part = cookie.split("=", 1)[0].strip()
        return f"{name_part}={REDACTED}" + (sep + attributes if sep else "")
    return REDACTED


def redact_headers(headers: list[tuple[str, str]] | dict[str, str]) -> list[list[str]]:
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    for k, v in items:
        if k.lower() in SECRET_HEADERS:
            v = _redact_header(k, v)
        elif k.lower() in ("location", "referer", "content-location"):
            v = redact_url(v)
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
        # e.g. an MTOM request (SOAP + VIHF + binary attachment): redacted as bytes
        view["base64"] = base64.b64encode(chunk if is_dicom(chunk) else redact_bytes(chunk)).decode("ascii")
    return view


def _private_dir(path: Path) -> None:
    """mkdir (parent must exist) and 0700 on ``path``, whatever the umask."""
    path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600 whatever the umask; an existing file is truncated)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


class EvidenceStore:
    """Writes evidence files under <run>/evidence/<scope>/, numbered in order; thread-safe."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.root = run_dir / "evidence"
        run_dir.mkdir(parents=True, exist_ok=True)
        _private_dir(self.root)
        self._lock = threading.Lock()
        self._scope = "campaign"
        self._counters: dict[str, int] = {}
        self._dirs: set[Path] = {self.root}  # directories already created private

    def set_scope(self, scope: str) -> None:
        with self._lock:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", scope).strip("-")[:120]
            self._scope = safe if safe.strip(".") else "scope"  # never "." or "..": evidence stays under evidence/

    def _next_path(self, label: str, suffix: str, scope: str | None = None) -> Path:
        with self._lock:
            scope = scope or self._scope  # a fixed scope (e.g. "campaign" for hooks) whatever scenario runs
            n = self._counters.get(scope, 0) + 1
            self._counters[scope] = n
            directory = self.root / scope
        if directory not in self._dirs:
            _private_dir(directory)
            self._dirs.add(directory)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "item"
        return directory / f"{n:03d}-{safe}{suffix}"

    def write_json(self, label: str, data: Any) -> str:
        """Store a JSON document; returns its path relative to the run directory (as cited in findings)."""
        path = self._next_path(label, ".json")
        text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
        write_private(path, redact_text(text).encode("utf-8"))
        return str(path.relative_to(self.run_dir))

    def write_bytes(self, label: str, data: bytes, suffix: str) -> str:
        """Store raw bytes (MIME, XML, HL7, DICOM...): redacted unless DICOM (binary, length-prefixed
        elements that a harness credential never enters; rewriting them would corrupt the file)."""
        path = self._next_path(label, suffix)
        dicom = suffix.lower() == ".dcm" or is_dicom(data)
        write_private(path, data if dicom else redact_bytes(data))
        return str(path.relative_to(self.run_dir))

    def write_record(self, label: str, text: str, *, scope: str | None = None) -> str:
        """Store a record whose values were redacted one by one (drimcheck.codec: what a check read, kept for
        `drimcheck rejudge`); written as is, since redacting the whole text again could alter encoded values."""
        path = self._next_path(label, ".json", scope)
        write_private(path, text.encode("utf-8"))
        return str(path.relative_to(self.run_dir))

    def write_text(self, label: str, text: str, suffix: str = ".txt", *, scope: str | None = None) -> str:
        """scope: file under evidence/<scope>/ instead of the current scenario's (e.g. "campaign")."""
        path = self._next_path(label, suffix, scope)
        write_private(path, redact_text(text).encode("utf-8"))
        return str(path.relative_to(self.run_dir))
