"""Hygiene (issue 11, deliverable 6): no credential in any file a run leaves, evidence private to the user,
the PACS simulator reachable only from the test bed.

The campaign test runs the requirements that carry every kind of credential drimcheck handles: XDS-03 (the
VIHF, a signed SAML assertion, in raw MIME evidence of ITI-41/57), CON-03 (PSC login: authorization code,
tokens, client secret; the VIHF of TD0.2/ITI-18/ITI-43), PSC-02 (the practitioner's Bearer token at a peer
Source) and HLT-01 (the health URL, here with ``user:password@``). Then every file under the run directory
is scanned, raw and, for JSON evidence, with its base64 views decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drimcheck import xds
from drimcheck.evidence import EvidenceStore, redact_bytes, redact_headers, redact_text, redact_url, redact_value

REPO = Path(__file__).resolve().parent.parent
HEALTH_PASSWORD = "hunter2-Secret"

# --------------------------------------------------------------------------- scanner


def _b64url_json(part: bytes) -> bool:
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))), dict)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False


JWT = re.compile(rb"(?<![A-Za-z0-9_-])([A-Za-z0-9_-]{8,}+)\.([A-Za-z0-9_-]{2,}+)\.([A-Za-z0-9_-]*+)")
ASSERTION = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?Assertion[\s>/]")
SIGNATURE_VALUE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?SignatureValue\b[^>]*>([^<]*)")
CLIENT_SECRET = re.compile(rb'client_secret\\?"?\s*[:=]\s*\\?"?([^"&\s,\\]*)', re.IGNORECASE)
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*(?:\\n)?\s*[A-Za-z0-9+/]{16}")
USERINFO = re.compile(rb"://[^\s/?#@:\"'<>\\]*:(?!\[REDACTED\])[^\s/?#@\"'<>\\]+@")


def leaks(data: bytes, secrets: list[bytes]) -> list[str]:
    """Every credential found in ``data`` (an empty list when the file is clean)."""
    found = []
    for start in ASSERTION.finditer(data):
        prefix = start.group(1)
        close = b"</" + (prefix + b":" if prefix else b"") + b"Assertion"
        end = data.find(close, start.end())
        for sig in SIGNATURE_VALUE.finditer(data[start.start():None if end < 0 else end]):
            if sig.group(1).strip() and not sig.group(1).startswith(b"[REDACTED"):
                found.append(f"SAML assertion with its SignatureValue {sig.group(1)[:20]!r}")
    found += [f"JWT {m.group(0)[:24]!r}" for m in JWT.finditer(data) if _b64url_json(m.group(1))]
    found += [f"client_secret {m.group(1)[:8]!r}" for m in CLIENT_SECRET.finditer(data)
              if m.group(1) and m.group(1) != b"[REDACTED]"]
    found += [f"PEM private key {m.group(0)[:40]!r}" for m in PEM_KEY.finditer(data)]
    found += [f"URL password {m.group(0)[:40]!r}" for m in USERINFO.finditer(data)]
    found += [f"run secret {s[:4]!r}…" for s in secrets if s in data]
    return found


def _base64_views(value) -> list[bytes]:
    if isinstance(value, dict):
        out = [base64.b64decode(v) for k, v in value.items() if k == "base64" and isinstance(v, str)]
        return out + [b for k, v in value.items() if k != "base64" for b in _base64_views(v)]
    if isinstance(value, list):
        return [b for v in value for b in _base64_views(v)]
    return []


def scan_tree(root: Path, secrets: list[bytes]) -> dict[str, list[str]]:
    problems = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found = leaks(data, secrets)
        if path.suffix == ".json":
            for view in _base64_views(json.loads(data)):
                found += [f"(base64 view) {f}" for f in leaks(view, secrets)]
        if found:
            problems[str(path.relative_to(root))] = found
    return problems


# --------------------------------------------------------------------------- unit: redaction


def test_redact_url_hides_the_password_of_userinfo_and_query_secrets():
    assert redact_url("https://probe:pw@db1.example.fr:8443/q/health") == "https://probe:[REDACTED]@db1.example.fr:8443/q/health"
    assert redact_url("https://:pw@h/") == "https://:[REDACTED]@h/"
    assert redact_url("http://u:p%40ss@h/x?a=1&access_token=t0k&client_secret=s&code=c") == (
        "http://u:[REDACTED]@h/x?a=1&access_token=[REDACTED]&client_secret=[REDACTED]&code=[REDACTED]")
    for clean in ("https://db1.example.fr/q/health", "https://user@h/", "mailto:someone@example.fr", ""):
        assert redact_url(clean) == clean
    assert redact_url(redact_url("https://u:p@h/")) == "https://u:[REDACTED]@h/"  # idempotent


def _jwt(header: dict, claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc(header)}.{enc(claims)}.c2lnbmF0dXJlLXZhbHVl"


def test_redact_text_covers_jwts_headers_forms_fields_and_keys():
    token = _jwt({"alg": "RS256", "kid": "k1"}, {"sub": "801234560801"})
    text = redact_text(f"Authorization: Bearer {token}\nProxy-Authorization: Basic dXNlcjpwdw==\n"
                       f"Cookie: SID=abc\nsee {token}.\n"
                       "grant_type=authorization_code&code=c0de&code_verifier=v3rifier&client_secret=s3cret\n"
                       '{"client_secret": "s3cret", "refresh_token": "r\\"t", "assertion": "PHNhbWw+"}')
    for secret in (token, "dXNlcjpwdw", "SID=abc", "c0de", "v3rifier", "s3cret", 'r\\"t', "PHNhbWw+"):
        assert secret not in text, secret
    assert "Bearer [REDACTED]" in text and "Basic [REDACTED]" in text and "[REDACTED jwt size=" in text
    assert leaks(text.encode(), []) == []
    # what is no credential stays: FQDNs, dotted UIDs, an exit code
    plain = "db1.349.mesimagesmedicales.fr 1.2.250.1.213.1.4.10 exit code=3 abcdefghij.klm.nop"
    assert redact_text(plain) == plain
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbcdefghijklmnop\n"  # truncated evidence: no END line
    assert "MHcCAQ" not in redact_text(pem)


def test_redact_headers_keeps_what_a_reader_needs():
    assert redact_headers([("Set-Cookie", "SID=abc; Path=/; Secure; HttpOnly"), ("Cookie", "a=1; b=2"),
                           ("Authorization", "Basic xyz"), ("Authorization", "garbage-without-scheme"),
                           ("Location", "https://h/cb?code=abc&state=s"), ("Accept", "*/*")]) == [
        ["Set-Cookie", "SID=[REDACTED]; Path=/; Secure; HttpOnly"], ["Cookie", "[REDACTED]"],
        ["Authorization", "Basic [REDACTED]"], ["Authorization", "[REDACTED]"],
        ["Location", "https://h/cb?code=[REDACTED]&state=s"], ["Accept", "*/*"]]


def test_redact_value_walks_results_structures():
    value = {"health_url": "https://u:pw@h/q/health", "password": "pw", "token": {"fingerprint": "ab"},
             "items": [("x", "https://u:pw@h/")]}
    assert redact_value(value) == {"health_url": "https://u:[REDACTED]@h/q/health", "password": "[REDACTED]",
                                   "token": {"fingerprint": "ab"}, "items": [("x", "https://u:[REDACTED]@h/")]}


# --------------------------------------------------------------------------- unit: the VIHF in DMP evidence


@pytest.fixture(scope="module")
def dmp_material(tmp_path_factory):
    from fixtures.pki import TestPKI
    from simulators.drimbox import source_xds as sx
    from tests.test_dmp import build, reference_kos

    pki = TestPKI(tmp_path_factory.mktemp("pki") / "pki")
    s = pki.org_sign()
    signer = sx.Credentials(str(s.cert_path), str(s.key_path), str(s.chain_path))
    return pki, build(reference_kos("hygiene"), signer)


def test_vihf_signature_is_redacted_in_raw_mime_evidence_and_the_check_still_judges(tmp_path, dmp_material):
    from cryptography.hazmat.primitives.serialization import Encoding

    from drimcheck.checks import xds as xds_checks
    from fixtures.pki import POLICY_OIDS
    from simulators.dmp import DmpSimulator

    pki, request = dmp_material
    original = xds.parse_request(request.content_type, request.body).vihf
    signature_value = re.search(rb"<(?:\w+:)?SignatureValue>([^<]+)<", request.body[request.body.find(b"Assertion"):])
    assert original is not None and original.signature is not None and signature_value
    sim = DmpSimulator(EvidenceStore(tmp_path))
    sim.handle("/si-dmp-server/v2/services/repository", request.content_type, request.body,
               pki.org_auth_cli().cert.public_bytes(Encoding.DER))
    ex = sim.exchanges[-1]
    trust = xds_checks.TrustMaterial([pki.igc_root.cert], [pki.igc_org.cert], (POLICY_OIDS["org_auth_cli"],),
                                     (POLICY_OIDS["org_sign"],))
    # the check judges the parsed request kept in memory, not the redacted file
    assert [f.verdict.value for f in xds_checks.vihf([ex], trust)] == ["PASS"]

    mime = next(tmp_path / p for p in ex.evidence if p.endswith(".mime"))
    stored = mime.read_bytes()
    assert signature_value.group(1) not in stored and leaks(stored, []) == []
    import hashlib

    digest = hashlib.sha256(re.sub(rb"\s", b"", signature_value.group(1))).hexdigest()
    assert b"[REDACTED SAML signature size=" in stored and digest.encode() in stored
    # still useful evidence: the redacted request parses, issuer and attributes are there; no longer a credential
    kept = xds.parse_request(request.content_type, stored)
    assert kept.vihf.attributes == original.attributes and kept.vihf.issuer == original.issuer
    assert "invalide" in xds_checks.vihf(_replayed(stored, request.content_type, pki), trust)[0].message
    # the other signed document of the submission (signature document, not a credential) is untouched
    assert stored.count(b"SignatureValue>") == request.body.count(b"SignatureValue>")


def _replayed(body: bytes, content_type: str, pki) -> list:
    from cryptography.hazmat.primitives.serialization import Encoding

    from simulators.dmp import DmpSimulator

    sim = DmpSimulator()
    sim.handle("/r", content_type, body, pki.org_auth_cli().cert.public_bytes(Encoding.DER))
    return sim.exchanges


def test_raw_evidence_is_redacted_but_dicom_is_kept_byte_for_byte(tmp_path):
    store = EvidenceStore(tmp_path)
    dicom = b"\0" * 128 + b"DICM" + b"password=abc"
    assert (tmp_path / store.write_bytes("kos", dicom, ".dcm")).read_bytes() == dicom
    hl7 = b"MSH|^~\\&|RIS\rOBX|1|RP|https://u:pw@h/x\r"
    assert (tmp_path / store.write_bytes("hl7", hl7, ".hl7")).read_bytes() == b"MSH|^~\\&|RIS\rOBX|1|RP|https://u:[REDACTED]@h/x\r"
    assert redact_bytes("é".encode() + b" token=x") == "é".encode() + b" token=[REDACTED]"


# --------------------------------------------------------------------------- the PACS simulator


@pytest.mark.slow
def test_orthanc_listens_on_loopback_only_and_refuses_unknown_ae_titles(tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from simulators.pacs import Orthanc, OrthancConfig
    from simulators.pacs import orthanc as orthanc_module

    if not Path(orthanc_module.DEFAULT_BINARY).exists():
        pytest.skip("Debian package orthanc not installed")
    if orthanc_module.bind_shim() is None:
        pytest.skip(f"no C compiler: Orthanc cannot be bound to one interface ({orthanc_module._SHIM.get('why')})")

    def associate(calling: str, called: str | None = None, host: str = "127.0.0.1") -> str:
        ae = AE(ae_title=calling)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 5
        assoc = ae.associate(host, pacs.dicom_port, ae_title=called or pacs.aet)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            return f"echo {status.Status:#06x}" if status else "no answer"
        return "rejected" if assoc.is_rejected else "failed"

    pacs = Orthanc(OrthancConfig(aet="HYGIENE_PACS"), tmp_path)
    with pacs:
        deadline = time.monotonic() + 10  # Orthanc's DICOM thread may bind just after HTTP answers
        while len(pacs.listening()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        sockets = pacs.listening()
        assert {port for _, port in sockets} == {pacs.http_port, pacs.dicom_port}
        assert {ip for ip, _ in sockets} == {"127.0.0.1"} and pacs.bind_enforced is True
        assert orthanc_module.listening_sockets(pacs.pid) == sockets
        conf = json.loads((pacs.scratch / "orthanc.json").read_text())
        assert conf["RemoteAccessAllowed"] is False and conf["DicomCheckCalledAet"] is True
        assert not any(v for k, v in conf.items() if k.startswith("DicomAlwaysAllow"))
        # the AE titles of the test bed: the reference DRIMbox's calling AE and drimcheck's SCU
        assert associate("DRIMBOX") == associate(orthanc_module.SCU_AET) == "echo 0x0000"
        assert associate("INTRUDER") == "rejected"
        assert associate("DRIMBOX", called="NOT_THE_PACS") == "rejected"
        other = _non_loopback_address()
        if other:  # the port is open on loopback only
            with pytest.raises(OSError):
                socket.create_connection((other, pacs.dicom_port), timeout=2).close()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only the route (source address) is chosen
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


# --------------------------------------------------------------------------- a real campaign

# Runs drimcheck with its work directory (PKI, Orthanc configuration with the DICOMweb passwords) in a
# directory the test knows, so those secrets can be looked for in the run directory.
_LAUNCHER = """
import sys, tempfile
work = sys.argv.pop(1)
_mkdtemp = tempfile.mkdtemp
def mkdtemp(suffix=None, prefix=None, dir=None):
    return _mkdtemp(suffix, prefix, work if (prefix or "").startswith("drimcheck-") and dir is None else dir)
tempfile.mkdtemp = mkdtemp
from drimcheck.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_secrets(workdir: Path) -> dict[str, set[bytes]]:
    """Secrets of the run: Orthanc's DICOMweb passwords, other passwords and secrets of its configuration
    files, and the first lines of every private key's body."""
    found: dict[str, set[bytes]] = {"orthanc": set(), "config": set(), "key": set()}

    def walk(value, key=""):
        if isinstance(value, dict):
            if key == "RegisteredUsers":
                found["orthanc"].update(v.encode() for v in value.values() if isinstance(v, str) and len(v) >= 8)
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and len(value) >= 8 and re.search(r"password|secret", key, re.I):
            found["config"].add(value.encode())

    for path in workdir.rglob("*.json"):
        try:
            walk(json.loads(path.read_text()))
        except (ValueError, UnicodeDecodeError):
            continue
    for path in workdir.rglob("*.pem"):
        text = path.read_text(errors="replace")
        if "PRIVATE KEY" in text:
            # base64 lines of the PRIVATE part only: in an RSA PKCS#8 PEM the first lines hold the modulus,
            # public and present in every certificate (a line can reappear verbatim in a certificate's base64,
            # one time in three); lines 9-10 hold the private exponent. A short (EC) key: its first line.
            body = [line for line in text.splitlines() if line and not line.startswith("-----")]
            picked = body[8:10] if len(body) > 10 else body[:1]
            found["key"].update(line.encode() for line in picked if len(line) > 40)
    return found


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    base = tmp_path_factory.mktemp("hygiene")
    sut = base / "sut.toml"
    reference = (REPO / "drimcheck" / "data" / "sut-reference.toml").read_text(encoding="utf-8")
    health = 'url = "https://db1.349.mesimagesmedicales.fr/q/health"'
    assert health in reference
    sut.write_text(reference.replace(health, health.replace("https://", f"https://probe:{HEALTH_PASSWORD}@")),
                   encoding="utf-8")
    work, out = base / "work", base / "run"
    work.mkdir()
    args = ["--sut", str(sut), "--out", str(out), "--keep-workdir", "--quiet"]
    for req in ("XDS-03", "CON-03", "PSC-02", "HLT-01"):
        args += ["--req", req]
    try:
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(work), "run", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=300)
        workdirs = list(work.glob("drimcheck-*"))
        assert len(workdirs) == 1, (proc.stdout + proc.stderr)[-2000:]
        secrets = _run_secrets(workdirs[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the PKI's private keys
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    return out, secrets


@pytest.mark.slow
def test_campaign_leaves_no_credential_in_any_file(campaign):
    out, found = campaign
    assert len(found["orthanc"]) == 3 and len(found["key"]) > 5  # the PACS-1, PACS-2 and peers' Orthanc; PKI
    secrets = sorted(found["orthanc"] | found["config"] | found["key"] | {HEALTH_PASSWORD.encode()})
    files = [p for p in out.rglob("*") if p.is_file()]
    mimes = [p for p in files if p.suffix == ".mime"]
    # the campaign did carry the credentials looked for
    assert any(b"Assertion" in p.read_bytes() for p in mimes)
    assert any(b"[REDACTED SAML signature" in p.read_bytes() for p in mimes)
    assert scan_tree(out, secrets) == {}
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["exit_code"] == 0
    assert data["sut"]["health_url"] == "https://probe:[REDACTED]@db1.349.mesimagesmedicales.fr/q/health"
    assert "probe:[REDACTED]@" in (out / "report.html").read_text()


@pytest.mark.slow
def test_campaign_evidence_is_private_to_its_owner(campaign):
    out, _ = campaign
    evidence = out / "evidence"
    dirs = [evidence, *[p for p in evidence.rglob("*") if p.is_dir()]]
    files = [p for p in evidence.rglob("*") if p.is_file()]
    assert len(dirs) > 3 and len(files) > 20
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}

