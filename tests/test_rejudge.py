"""`drimcheck rejudge`: every verdict of a campaign computed again from its evidence alone.

Campaigns (one per case, module-scoped): a golden one spanning Source, Conso, trust space and health, and
mutants of four areas, three of them --strict; each is re-judged and must give exactly the same verdicts
per scenario and per requirement (and the same findings). Then the codec, the judged facts and the @check
recording on their own, and bad input: one French line, exit 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drimcheck import codec
from drimcheck.checks import check, judgement_record, record_judgement, replay
from drimcheck.cli import main
from drimcheck.evidence import EvidenceStore
from drimcheck.net import Exchange, TlsInfo, TransportOutcome
from drimcheck.rejudge import load_records
from drimcheck.verdicts import Verdict, failed, passed

REPO = Path(__file__).resolve().parent.parent

GOLDEN = ["--req", "SRC-01", "--req", "CON-01", "--req", "CON-03", "--req", "PSC-02", "--req", "WL-03",
          "--req", "HLT-01"]
MUTANTS = {  # id: (requirement selected, strict); chosen among the mutants whose scenarios wait least
    "src-retrieve-localhost": ("FQDN-01", True),  # Source: KOS RetrieveURL on localhost
    "tls-legacy-accepted": ("CRT-05", True),  # trust space: TLS 1.0/1.1 accepted
    "health-always-down": ("HLT-01", True),  # health
    "wado-no-token-check": ("PSC-01", False),  # Source WADO-RS / PSC; not strict: used by the --catalogue case
}


def run_main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def campaign(out: Path, *args: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--quiet", "--out", str(out), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr + proc.stdout
    return out


def verdicts(run: Path) -> tuple[list, dict, list]:
    data = json.loads((run / "results.json").read_text(encoding="utf-8"))
    scenarios = [(s["id"], s["verdict"]) for s in data["scenarios"]]
    requirements = {r["id"]: r["verdict"] for r in data["requirements"]}
    findings = [(s["id"], [(f["requirement"], f["verdict"], f["raw_verdict"], f["check"], f["message"], f["evidence"])
                           for f in s["findings"]]) for s in data["scenarios"]]
    return scenarios, requirements, findings


def rejudge(run: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code, stdout, err = run_main("rejudge", str(run), "--out", str(out), "--json", *extra)
    assert err == "", err
    return code, json.loads(stdout)


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    return campaign(tmp_path_factory.mktemp("golden") / "run", *GOLDEN)


@pytest.fixture(scope="module")
def mutant_run(tmp_path_factory):
    """The run of one mutant (campaign made once per module, whichever test asks first)."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            req, strict = MUTANTS[name]
            out = tmp_path_factory.mktemp(name) / "run"
            runs[name] = campaign(out, "--mutant", name, "--req", req, *(["--strict"] if strict else []))
        return runs[name]

    return get


# ------------------------------------------------------------------------------------------ campaigns

def test_rejudge_reproduces_the_golden_run_exactly(golden, tmp_path):
    scenarios, requirements, findings = verdicts(golden)
    assert {v for _, v in scenarios} == {"PASS"} and len(scenarios) >= 15
    judged = {r for r, v in requirements.items() if v not in ("NOT_RUN", "NOT_TESTED")}
    assert {"SRC-01", "CON-01", "CON-03", "PSC-02", "WL-03", "HLT-01", "XDS-03"} <= judged
    code, summary = rejudge(golden, tmp_path / "re")
    assert code == 0 and summary["not_rejudged"] == [] and summary["differing"] == []
    assert summary["calls"] > 0 and summary["same_verdict"] == summary["findings"] == summary["same_message"]
    assert verdicts(tmp_path / "re") == (scenarios, requirements, findings)
    assert (tmp_path / "re" / "junit.xml").is_file() and "CONFORME" in (tmp_path / "re" / "report.html").read_text()
    schema = json.loads((REPO / "docs" / "results.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads((tmp_path / "re" / "results.json").read_text(encoding="utf-8")), schema)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_rejudge_reproduces_mutant_runs_exactly(mutant_run, name, tmp_path):
    run = mutant_run(name)
    scenarios, requirements, findings = verdicts(run)
    req, _ = MUTANTS[name]
    assert requirements[req] == "FAIL"  # PSC-01 is required: FAIL even without --strict
    code, summary = rejudge(run, tmp_path / "re")
    assert code == 1 and summary["not_rejudged"] == [] and summary["differing"] == []
    assert verdicts(tmp_path / "re") == (scenarios, requirements, findings)


def test_another_catalogue_changes_the_verdicts_accordingly(mutant_run, tmp_path):
    run = mutant_run("wado-no-token-check")  # not --strict
    text = (REPO / "drimcheck" / "data" / "requirements.toml").read_text(encoding="utf-8")
    head, sep, tail = text.partition('id = "PSC-01"')
    tail = tail.replace('strength = "required"', 'strength = "inferred"\ninferred_from = "essai de rejugement"', 1)
    catalogue = tmp_path / "requirements.toml"
    catalogue.write_text(head + sep + tail, encoding="utf-8")
    code, summary = rejudge(run, tmp_path / "re", "--catalogue", str(catalogue))
    _, requirements, _ = verdicts(tmp_path / "re")
    assert requirements["PSC-01"] == "WARN" and code == 0  # inferred, not --strict: FAIL becomes WARN
    assert summary["same_verdict"] == summary["findings"]  # the raw verdicts are the campaign's


def test_rejudged_evidence_is_private_and_judgements_are_redacted(golden, tmp_path):
    rejudge(golden, tmp_path / "re")
    for root, _, files in os.walk(tmp_path / "re" / "evidence"):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE(os.stat(Path(root) / name).st_mode) == 0o600
    records = sorted((golden / "evidence").glob("*/*-judgement.json"))
    assert records and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in records)
    text = "".join(p.read_text(encoding="utf-8") for p in records)
    assert "[REDACTED SAML signature" in text
    assert not any(f"BEGIN {kind}PRIVATE KEY" in text for kind in ("", "RSA ", "EC "))
    assert "drimcheck.xds.verify_xmldsig" in text  # the VIHF's signature is judged from the recorded fact


def test_a_call_that_was_not_recorded_is_an_error_never_the_old_verdict(golden, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(golden, run)
    record = next(p for p in sorted((run / "evidence").glob("*/*-judgement.json")) if '"health.reports_up"' in p.read_text())
    data = json.loads(record.read_text())
    call = next(c for c in data["calls"] if c["check"] == "health.reports_up")
    for key in ("args", "kwargs", "docs", "facts"):
        call.pop(key)
    call["unrecordable"] = "valeur non enregistrable : essai"
    record.write_text(json.dumps(data))
    code, summary = rejudge(run, tmp_path / "re")
    _, requirements, _ = verdicts(tmp_path / "re")
    assert requirements["HLT-01"] == "ERROR" and code == 3 and len(summary["not_rejudged"]) == 1


# ------------------------------------------------------------------------------------------ bad input

def _assert_one_line(code: int, err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("drimcheck : erreur : ") and fragment in lines[0], lines[0]


def _minimal_run(path: Path) -> Path:
    (path / "evidence").mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"run": {"id": "x"}, "scenarios": [], "requirements": []}))
    return path


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: p / "absent", "dossier introuvable"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "fichier introuvable"),
    (lambda p: (p / "bad").mkdir() or (p / "bad" / "results.json").write_text("{") and p / "bad", "JSON invalide"),
    (lambda p: (p / "alien").mkdir() or (p / "alien" / "results.json").write_text("[1]") and p / "alien",
     "pas un results.json de drimcheck"),
    (lambda p: (p / "noev").mkdir() or (p / "noev" / "results.json").write_text(
        json.dumps({"run": {}, "scenarios": [], "requirements": []})) and p / "noev", "pas de dossier evidence/"),
])
def test_unusable_run_dir_is_one_line_exit_2(tmp_path, setup, fragment):
    code, _, err = run_main("rejudge", str(setup(tmp_path)), "--out", str(tmp_path / "out"))
    _assert_one_line(code, err, fragment)


def test_malformed_records_out_and_catalogue_are_one_line_exit_2(tmp_path):
    run = _minimal_run(tmp_path / "run")
    (run / "evidence" / "s").mkdir()
    (run / "evidence" / "s" / "001-judgement.json").write_text('{"format": 99}')
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "o1"))
    _assert_one_line(code, err, "format inconnu")
    (run / "evidence" / "s" / "001-judgement.json").write_text(
        json.dumps({"format": codec.FORMAT, "scenario": "ailleurs", "calls": [], "judged": []}))
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "o2"))
    _assert_one_line(code, err, "absents de results.json")
    (run / "evidence" / "s" / "001-judgement.json").unlink()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "full"))
    _assert_one_line(code, err, "n'est pas un dossier vide")
    code, _, err = run_main("rejudge", str(run), "--out", str(run / "inside"))
    _assert_one_line(code, err, "hors de la campagne")
    (tmp_path / "cat.toml").write_text("not = [toml")
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "o3"), "--catalogue", str(tmp_path / "cat.toml"))
    _assert_one_line(code, err, "catalogue")
    code, _, err = run_main("rejudge", str(run))
    _assert_one_line(code, err, "--out")
    data = json.loads((run / "results.json").read_text())
    data["scenarios"] = [{"id": "s", "findings": [{"requirement": "HLT-01", "verdict": "PASS", "check": "health.reports_up"}]}]
    (run / "results.json").write_text(json.dumps(data))
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "o4"))
    _assert_one_line(code, err, "aucun enregistrement de jugement")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=12)
fields = st.sampled_from(["$", "check", "args", "kwargs", "docs", "facts", "findings", "call", "index", "finding",
                          "items", "type", "fields", "b64", "doc", "path", "value", "requirement", "verdict"])
nodes = st.recursive(json_values, lambda inner: st.dictionaries(fields, inner, max_size=4) | st.lists(inner, max_size=3),
                     max_leaves=16)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=nodes, judged=nodes, scenario=st.dictionaries(st.sampled_from(
    ["name", "requirements", "steps", "error", "duration_s", "tags", "findings"]), json_values, max_size=3),
    campaign=st.dictionaries(st.sampled_from(["timeouts", "mutant", "requirements_selected", "loosened_bounds"]),
                             json_values, max_size=2), real=st.booleans())
def test_any_record_or_results_content_follows_the_exit_contract(tmp_path, calls, judged, scenario, campaign, real):
    run = tmp_path / "fuzz"
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    (run / "evidence" / "s").mkdir(parents=True)
    scenario = {"requirements": ["HLT-01"], "findings": [], **scenario, "id": "s"}
    if not isinstance(scenario["findings"], list):
        scenario["findings"] = []
    (run / "results.json").write_text(json.dumps({"run": {"id": "f"}, "campaign": campaign, "scenarios": [scenario],
                                                  "requirements": []}))
    record = {"format": codec.FORMAT, "scenario": "s", "calls": calls if isinstance(calls, list) else [calls],
              "judged": judged if isinstance(judged, list) else [judged]}
    if real:  # a real check on arbitrary arguments: re-judged as ERROR at worst
        record["calls"] = [{"check": "health.reports_up", "args": record["calls"], "kwargs": {}, "docs": [], "facts": [],
                            "findings": [{"requirement": "HLT-01", "verdict": "PASS", "raw_verdict": "PASS"}]}]
        record["judged"] = [{"call": 0, "index": 0}]
    (run / "evidence" / "s" / "001-judgement.json").write_text(json.dumps(record))
    code, _, err = run_main("rejudge", str(run), "--out", str(tmp_path / "out"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (0, 1, 2, 3) and "Traceback" not in err and len(lines) <= 1, err
    assert "erreur interne" not in err, err
    if code == 2:
        assert lines[0].startswith("drimcheck : erreur : "), err


# ------------------------------------------------------------------------------------------ codec

@dataclasses.dataclass
class ForeignRecord:  # a class outside drimcheck (like simulators.ris.MllpExchange): read back as a Record
    label: str
    sent_at: float
    acked_at: float | None = None

    @property
    def elapsed_s(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


def _certificate():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db1.test.mesimagesmedicales.fr")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))


def roundtrip(value):
    return codec.decode(json.loads(json.dumps(codec.encode(value))))


def test_codec_round_trips_the_types_checks_read():
    cert = _certificate()
    ex = Exchange("health", "GET", "https://db1/q/health", "127.0.0.1:1", "2026-12-03T08:00:00",
                  [("Accept", "application/json")], None, 200, [("Content-Type", "application/json")], b'{"status":"UP"}',
                  0.25, TlsInfo("db1", "TLSv1.3", "TLS_AES_128_GCM_SHA256", [b"\x30\x82der"]),
                  outcome=TransportOutcome.ANSWERED, evidence="evidence/s/001.json")
    value = {"ex": ex, ("a", 1): {1, 2}, "t": (1, "x"), "fs": frozenset({"y"}), "nan": math.nan, "inf": -math.inf,
             "when": datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "d": timedelta(seconds=1.5), "cert": cert,
             "views": {"k": 1}.keys(), "nested": [[b"\x00\x01", None, True, 3, 2.5]]}
    back = roundtrip(value)
    assert back["ex"] == ex and back["ex"].outcome is TransportOutcome.ANSWERED and back["ex"].json() == {"status": "UP"}
    assert back[("a", 1)] == {1, 2} and back["t"] == (1, "x") and back["fs"] == frozenset({"y"})
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf and back["d"] == timedelta(seconds=1.5)
    assert back["when"] == value["when"] and back["cert"] == cert and back["views"] == ["k"]
    assert back["nested"] == [[b"\x00\x01", None, True, 3, 2.5]]


def test_codec_keeps_xml_documents_once_and_elements_in_place():
    from lxml import etree

    root = etree.fromstring(b'<a xmlns="urn:x"><!-- c --><b><c id="1">t</c></b><c id="2"/></a>')
    first, second = root[1][0], root[2]
    enc = codec.encode([first, second, root])
    assert len(enc["docs"]) == 1
    a, b, r = codec.decode(json.loads(json.dumps(enc)))
    assert a.get("id") == "1" and a.text == "t" and b.get("id") == "2" and a.getroottree().getroot() is r


def test_codec_redacts_secrets_and_reads_foreign_records_and_datasets():
    import pydicom
    from pydicom.dataset import FileMetaDataset

    body = b"GET / HTTP/1.1\r\nAuthorization: Bearer abc.def\r\n\r\n{\"password\": \"hunter2\"}"
    enc = json.dumps(codec.encode({"body": body, "note": "https://u:pw@host/x"}))
    assert "hunter2" not in enc and ":pw@" not in enc
    assert "hunter2" not in roundtrip(body).decode()
    headers = [("Authorization", "Bearer opaque-token-1"), ("Cookie", "SESSION=s3cr3t; lang=fr"), ("Accept", "*/*")]
    fields = {"client_secret": "pw-42", "access_token": "opaque-token-1", "who": "Dr X", "views": {"a": "b"}.values()}
    enc = json.dumps(codec.encode([headers, fields]))
    assert not any(secret in enc for secret in ("opaque-token-1", "s3cr3t", "pw-42"))
    back_headers, back_fields = roundtrip([headers, fields])
    assert back_headers[0][1].startswith("Bearer [REDACTED credential size=14 ") and "SESSION=[REDACTED cookie" in back_headers[1][1]
    assert back_headers[2] == ("Accept", "*/*") and back_fields["who"] == "Dr X" and back_fields["views"] == ["b"]
    assert back_fields["access_token"].startswith("[REDACTED access_token size=14 ")
    assert back_headers[0][1].split("sha256=")[1] == back_fields["access_token"].split("sha256=")[1]  # equal stay equal
    # a value already redacted upstream (a simulator's record, evidence) is kept as is, not redacted again;
    # anything else after the scheme, even shaped like a marker, is a secret
    assert roundtrip([("Authorization", "Bearer [REDACTED]")]) == [("Authorization", "Bearer [REDACTED]")]
    assert "[REDACTED]x" not in json.dumps(codec.encode([("Authorization", "Bearer [REDACTED]x")]))
    rec = roundtrip(ForeignRecord("hl7", 1.0, 1.5))
    assert isinstance(rec, codec.Record) and rec.label == "hl7" and rec.elapsed_s == 0.5
    ds = pydicom.Dataset()
    ds.PatientID = "123"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    assert roundtrip(ds).PatientID == "123"


def test_redaction_shortcuts_give_what_evidence_redaction_gives(monkeypatch):
    from drimcheck.evidence import redact_bytes, redact_text

    samples = ["Authorization: Bearer abc", "-----BEGIN PRIVATE KEY-----\nMIIB", "a=1&client_secret=x", '{"token": "t"}',
               "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "https://u:pw@h/x", "<Password>x</Password>",
               '<saml:Assertion ID="a"><ds:SignatureValue>QUJD</ds:SignatureValue></saml:Assertion>', "1.2.250.1.213"]
    for text in samples:
        for value in (text, text * 60):  # short (cached) and large (cached by digest)
            assert codec._redacted(value) == redact_text(value)
            assert codec._redacted(value) == redact_text(value)
            data = value.encode()
            assert codec._redacted_bytes(data) == codec._redacted_bytes(data) == (data if len(data) < 512 else redact_bytes(data))
    monkeypatch.setattr(codec._LargeCache, "MAX_BYTES", 4096)
    cache = codec._LargeCache()
    for i in range(20):
        cache.get(f"{i:04d}" * 200, redact_text)
    assert cache._size <= 4096 and len(cache._items) < 20


def test_codec_refuses_what_it_cannot_store_or_should_not_rebuild(monkeypatch):
    for bad in (lambda: 1, iter([1]), object()):
        with pytest.raises(codec.CodecError):
            codec.encode(bad)
    for node in ({"$": "dc", "type": "os:PathLike", "fields": {}}, {"$": "enum", "type": "subprocess:Popen", "value": 1},
                 {"$": "dc", "type": "drimcheck.__main__:main", "fields": {}},  # never imported (it runs the CLI)
                 {"$": "dc", "type": "drimcheck.evidence:EvidenceStore", "fields": {}},  # not a dataclass
                 {"$": "nope"}, {"$": "bytes", "b64": "***"}, {"$": "xml", "doc": 3, "path": []}, {"x": 1}):
        with pytest.raises(codec.CodecError):
            codec.decode({"value": node, "docs": []})
    deep: list = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(codec.CodecError):
        codec.encode(deep)
    monkeypatch.setattr(codec, "MAX_VALUE", 10)
    with pytest.raises(codec.CodecError):
        codec.encode(b"x" * 11)


def test_judged_facts_are_recorded_then_replayed_and_checked():
    calls = []

    @codec.judged_fact
    def verify(secret: str) -> bool:
        calls.append(secret)
        return secret == "good"

    log = codec.FactLog()
    with codec.facts(log):
        assert verify("good") is True and verify("bad") is False
    assert calls == ["good", "bad"] and len(log.entries) == 2
    replay_log = codec.FactLog(replay=json.loads(json.dumps(log.entries)))
    with codec.facts(replay_log):
        assert verify("good") is True and verify("bad") is False
    assert calls == ["good", "bad"]  # replayed, not computed again
    with codec.facts(codec.FactLog(replay=log.entries)), pytest.raises(codec.CodecError, match="différent"):
        verify("other")
    with codec.facts(codec.FactLog(replay=[])), pytest.raises(codec.CodecError, match="absent"):
        verify("good")


@pytest.fixture
def sample_check():
    """A check registered for this test only (drimcheck.coverage reads the registry)."""
    from drimcheck import checks

    @check("HLT-01")
    def sample(items, limit: int, *, now: datetime | None = None):
        seen = list(items)
        stamp = (now or datetime.now(UTC)).year
        if len(seen) > limit:
            return [failed("HLT-01", f"{len(seen)} > {limit} ({stamp})")]
        return [passed("HLT-01", f"{len(seen)} ≤ {limit} ({stamp})"), passed("HLT-01", "second")]

    name = next(n for n, f in checks.FUNCTIONS.items() if f is sample)
    yield sample
    checks.REGISTRY.pop(name), checks.FUNCTIONS.pop(name)


def test_check_calls_are_recorded_at_judgement_and_replayed(tmp_path, sample_check):
    findings = sample_check((i for i in range(3)), 5)  # a generator: materialised for the check and the record
    assert [f.verdict for f in findings] == [Verdict.PASS, Verdict.PASS] and findings[0].message.startswith("3 ≤ 5")
    record = judgement_record("scn", [findings[1], findings[0]])
    call = record["calls"][0]
    assert record["judged"] == [{"call": 0, "index": 1}, {"call": 0, "index": 0}]
    assert "now" in call["kwargs"] and call["check"].endswith(".sample")
    again = replay(json.loads(json.dumps(call)))
    assert [(f.requirement, f.verdict, f.message) for f in again] == [(f.requirement, f.verdict, f.message) for f in findings]
    store = EvidenceStore(tmp_path)
    path = record_judgement(store, "scn", findings)
    assert path is not None and stat.S_IMODE((tmp_path / path).stat().st_mode) == 0o600
    loaded = load_records(tmp_path)
    assert list(loaded) == ["scn"] and loaded["scn"][0]["judged"] == [{"call": 0, "index": 0}, {"call": 0, "index": 1}]
    assert record_judgement(None, "scn", findings) is None  # outside a campaign: nothing stored, nothing raised
    assert "finding" in judgement_record("scn", findings)["judged"][0]  # once stored, the inputs are released
    unstorable = sample_check([lambda: 0] * 9, 5)
    rec = judgement_record("scn", unstorable)["calls"][0]
    assert "unrecordable" in rec and rec["findings"][0]["verdict"] == "FAIL"
    with pytest.raises(codec.CodecError, match="non enregistré"):
        replay(rec)
