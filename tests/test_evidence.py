"""Evidence is written per scenario, in order, with secrets and private keys redacted."""

from __future__ import annotations

import json
import os
import stat

from drimcheck.evidence import EvidenceStore, body_for_evidence, redact_headers, redact_text


def test_secrets_are_redacted_in_headers_json_forms_and_pem():
    assert redact_headers([("Authorization", "Bearer abc.def"), ("Accept", "x")]) == [
        ["Authorization", "Bearer [REDACTED]"], ["Accept", "x"]]
    assert "s3cret" not in redact_text('{"access_token": "s3cret", "other": 1}')
    assert "s3cret" not in redact_text("grant_type=x&client_secret=s3cret&code=abc")
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    assert "MIIE" not in redact_text(f"key: {pem}")


def test_binary_bodies_are_base64_and_large_ones_truncated():
    assert "base64" in body_for_evidence(b"\x00\x01", "application/dicom")
    big = body_for_evidence(b"a" * 300_000, "text/plain")
    assert big["truncated"] and big["size"] == 300_000 and len(big["text"]) < 300_000


def test_store_numbers_files_per_scope_and_returns_run_relative_paths(tmp_path):
    store = EvidenceStore(tmp_path)
    store.set_scope("scénario 1/a")
    p1 = store.write_json("health check", {"password": "pw", "x": 1})
    p2 = store.write_text("note", "hello")
    store.set_scope("other")
    p3 = store.write_bytes("kos", b"DICM", ".dcm")
    assert p1.endswith("001-health-check.json") and p2.endswith("002-note.txt") and p3.endswith("001-kos.dcm")
    assert json.loads((tmp_path / p1).read_text())["password"] == "[REDACTED]"
    assert not p1.startswith("/")


def test_evidence_modes_do_not_depend_on_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = EvidenceStore(tmp_path / "run")
        store.set_scope("s")
        paths = [store.write_json("a", {"x": 1}), store.write_text("b", "t"), store.write_bytes("c", b"\0", ".bin")]
    finally:
        os.umask(old)
    root = tmp_path / "run" / "evidence"
    assert stat.S_IMODE(root.stat().st_mode) == stat.S_IMODE((root / "s").stat().st_mode) == 0o700
    assert {stat.S_IMODE((tmp_path / "run" / p).stat().st_mode) for p in paths} == {0o600}
