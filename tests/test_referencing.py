"""Normative bounds, reports that say what was run, run directories, and the referencing package.

Unit tests first (catalogue bounds, effective timeouts, verdict labels, --out safety, CMS signature,
verify-package on hand-made archives), then three real campaigns against the embedded reference: the
loosened-bound regression (mutant health-slow-recovery with health_up_s = 30), a partial run forced into
a directory holding an older run, and a signed referencing package verified by drimcheck and openssl.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from drimcheck.catalogue import load as catalogue_load
import zipfile
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from drimcheck import bounds, catalogue, config, package
from drimcheck.commands import verify_package
from drimcheck.config import Timeouts
from drimcheck.results import CampaignInfo, RunResult, ScenarioResult
from drimcheck.verdicts import Finding, Verdict

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "results.schema.json").read_text())


def drimcheck(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drimcheck", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def reference_sut(tmp_path: Path, **timeouts: float) -> Path:
    """The embedded reference description with some [timeouts] overridden."""
    text = config.reference_text()
    lines = [f"{k} = {v}" for k, v in timeouts.items()]
    kept = [l for l in text.splitlines() if l.split("=")[0].strip() not in timeouts]
    out = []
    for line in kept:
        out.append(line)
        if line.strip() == "[timeouts]":
            out += lines
    path = tmp_path / "sut.toml"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def operator_identity(tmp_path: Path, kind: str = "rsa") -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Opérateur de référencement (test)"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Laboratoire de test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"operateur-{kind}.pem", tmp_path / f"operateur-{kind}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# ------------------------------------------------------------------------------ catalogue bounds
def test_health_deadlines_carry_their_normative_bound_and_titles_state_it():
    cat = catalogue.load()
    bounded = {r.id: r.bound for r in cat.requirements if r.bound}
    assert bounded["HLT-02"] == catalogue.Bound("health_down_s", 10.0)
    assert bounded["HLT-03"] == catalogue.Bound("health_up_s", 10.0)
    assert bounded["HLT-06"] == catalogue.Bound("health_budget_s", 2.0)
    for rid, bound in bounded.items():
        assert f"{bound.value_s:g} s" in cat.get(rid).title, rid  # the bound is the one the title states


def test_drimcheck_defaults_and_the_embedded_reference_stay_within_every_bound():
    cat = catalogue.load()
    assert not bounds.effective(Timeouts(), cat).out_of_referencing
    assert not bounds.effective(config.load(None).timeouts, cat).out_of_referencing


def test_a_bound_on_an_unknown_timeout_is_a_catalogue_error():
    text = ('catalogue_version = "1"\n[[requirement]]\nid = "X-01"\ntitle = "t"\nsources = [{ doc = "rfc5280", section = "§6" }]\nstrength = "required"\n'
            'actor = "both"\narea = "a"\nbound = { timeout = "health_up", value_s = 10 }\n')
    with pytest.raises(catalogue.CatalogueError, match="bound must be"):
        catalogue.parse(text)


def test_tightening_is_kept_loosening_is_flagged_and_harness_waits_stay_configurable():
    cat = catalogue.load()
    tight = bounds.effective(Timeouts(health_up_s=4, health_down_s=10), cat)
    rows = {r.name: r for r in tight.rows}
    assert tight.timeouts.health_up_s == 4 and rows["health_up_s"].status == "tightened"
    assert rows["health_down_s"].status == "normative" and not tight.out_of_referencing
    waits = bounds.effective(Timeouts(publication_s=120, quiet_s=9, request_s=30), cat)
    assert not waits.out_of_referencing and {r.name: r.status for r in waits.rows}["publication_s"] == "configurable"
    loose = bounds.effective(Timeouts(health_up_s=30), cat)
    assert loose.out_of_referencing and loose.timeouts.health_up_s == 30
    assert loose.reasons_fr() == ["[timeouts] health_up_s = 30 s relâche la borne normative de 10 s (HLT-03)"]


# ------------------------------------------------------------------------------ verdict labels
SUT = {"name": "n", "roles": ["source"], "registry": "349", "pacs": [], "health_url": "https://x/",
       "description_file": "f"}


def result_with(campaign: CampaignInfo, findings: list[Finding]) -> RunResult:
    scenario = ScenarioResult("s", "f", "f.feature", "s", sorted({f.requirement for f in findings}), findings=findings)
    return RunResult("r", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", 1.0, False, SUT,
                     catalogue.load(), [scenario], {"HLT-01", "HLT-03", "HLT-06"}, campaign=campaign)


def test_only_a_complete_campaign_within_the_bounds_says_a_plain_conforme():
    ok = [Finding("HLT-01", Verdict.PASS, "ok")]
    assert result_with(CampaignInfo(), ok).verdict_fr == "CONFORME"
    partial = result_with(CampaignInfo(requirements_selected=["HLT-01"]), ok)
    assert partial.verdict_fr == f"CONFORME (campagne partielle : 1 exigences sur {len(catalogue_load().requirements)})" and partial.exit_code == 0
    assert partial.to_dict()["campaign"]["requirements_not_run"] == ["HLT-03", "HLT-06"]
    mutant = result_with(CampaignInfo(mutant="health-slow-recovery"), ok)
    assert mutant.verdict_fr.startswith("mutant health-slow-recovery — pas un verdict de conformité")
    assert result_with(CampaignInfo(referencing=True), ok).verdict_fr == "CONFORME (campagne de référencement)"


def test_a_loosened_bound_never_exits_0_and_its_passes_become_warnings():
    cat = catalogue.load()
    eff = bounds.effective(Timeouts(health_up_s=30), cat)
    findings = [Finding("HLT-03", Verdict.PASS, "UP 15.21 s après le redémarrage"), Finding("HLT-01", Verdict.PASS, "ok")]
    res = result_with(CampaignInfo(timeouts=eff.to_list(), loosened=eff.reasons_fr()), findings)
    assert res.raw_exit_code == 0 and res.exit_code == 1
    assert res.verdict_fr.startswith("HORS RÉFÉRENCEMENT") and "pas un verdict de conformité" in res.verdict_fr
    hlt03 = findings[0]
    assert hlt03.verdict is Verdict.WARN and hlt03.raw_verdict is Verdict.PASS and "hors référencement" in hlt03.message
    assert findings[1].verdict is Verdict.PASS
    data = res.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert data["campaign"]["out_of_referencing"] and data["run"]["exit_code"] == 1
    assert next(r for r in data["requirements"] if r["id"] == "HLT-03")["bound"] == {
        "timeout": "health_up_s", "normative_s": 10.0, "effective_s": 30.0, "loosened": True}


# ------------------------------------------------------------------------------ run directories
def test_out_must_be_empty_and_force_only_empties_a_drimcheck_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fresh = tmp_path / "a" / "run"
    package.prepare_run_dir(fresh, force=False)
    assert (fresh / package.MARKER).is_file()
    (fresh / "evidence" / "old").mkdir(parents=True)
    (fresh / "results.json").write_text("{}")
    with pytest.raises(package.PackageError, match="n'est pas vide"):
        package.prepare_run_dir(fresh, force=False)
    package.prepare_run_dir(fresh, force=True)
    assert sorted(p.name for p in fresh.iterdir()) == [package.MARKER]

    foreign = tmp_path / "a" / "documents"
    foreign.mkdir()
    (foreign / "these.odt").write_text("mon travail")
    with pytest.raises(package.PackageError, match="ne ressemble pas"):
        package.prepare_run_dir(foreign, force=True)
    assert (foreign / "these.odt").read_text() == "mon travail"

    old_run = tmp_path / "a" / "old-run"  # a run directory from before the marker existed
    (old_run / "evidence").mkdir(parents=True)
    (old_run / "report.html").write_text("x")
    package.prepare_run_dir(old_run, force=True)
    assert sorted(p.name for p in old_run.iterdir()) == [package.MARKER]

    for protected in (tmp_path, Path.home(), Path("/")):
        if any(protected.iterdir()):
            with pytest.raises(package.PackageError, match="--force refusé"):
                package.prepare_run_dir(protected, force=True)
    link = tmp_path / "a" / "link"
    link.symlink_to(fresh)
    with pytest.raises(package.PackageError, match="lien symbolique"):
        package.prepare_run_dir(link, force=True)


@pytest.mark.parametrize("extra, fragment", [
    (["--referencement", "--req", "HLT-03"], "--referencement refuse --req"),
    (["--referencement", "--mutant", "health-slow-recovery"], "--referencement refuse --mutant"),
    (["--referencement", "--force"], "--referencement refuse --force"),
    (["--sign-cert", "c.pem", "--sign-key", "k.pem"], "ne s'emploient qu'avec --referencement"),
    (["--referencement", "--sign-cert", "c.pem"], "vont ensemble"),
])
def test_referencing_refusals_are_one_line_exit_2(tmp_path, extra, fragment):
    proc = drimcheck("run", "--out", str(tmp_path / "out"), *extra)
    assert fragment in one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_referencing_refuses_a_loosened_bound_and_a_non_empty_out(tmp_path):
    proc = drimcheck("run", "--referencement", "--sut", str(reference_sut(tmp_path, health_up_s=30)),
                     "--out", str(tmp_path / "out"))
    assert "borne normative relâchée" in one_line_error(proc) and "health_up_s = 30 s" in proc.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "results.json").write_text("{}")
    proc = drimcheck("run", "--referencement", "--out", str(used))
    assert "vide ou inexistant" in one_line_error(proc)
    proc = drimcheck("run", "--req", "HLT-06", "--out", str(used))
    assert "n'est pas vide" in one_line_error(proc) and "--force" in proc.stderr
    assert (used / "results.json").read_text() == "{}"


def test_signing_material_is_checked_before_the_campaign(tmp_path):
    cert, _ = operator_identity(tmp_path, "rsa")
    _, other_key = operator_identity(tmp_path, "ec")
    proc = drimcheck("run", "--referencement", "--sign-cert", str(cert), "--sign-key", str(other_key),
                     "--out", str(tmp_path / "out"))
    assert "ne correspond pas au certificat" in one_line_error(proc)


# ------------------------------------------------------------------------------ CMS signature
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_manifest_signature_is_standard_cms_checked_by_us_and_by_openssl(tmp_path, kind):
    cert_path, key_path = operator_identity(tmp_path, kind)
    signer = package.load_signer(cert_path, key_path)
    manifest = package.manifest_text({"results.json": b"{}", "evidence/a/001-x.json": b"[]"})
    sig = package.sign_manifest(manifest, signer)
    info = package.verify_cms_detached(sig, manifest).describe()
    assert "Opérateur de référencement" in info["subject"] and info["signing_time"]
    assert info["sha256"] == signer.certificate.fingerprint(hashes.SHA256()).hex()
    (tmp_path / "m").write_bytes(manifest)
    (tmp_path / "m.p7s").write_bytes(sig)
    openssl = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "m.p7s"),
               "-content", str(tmp_path / "m"), "-CAfile", str(cert_path), "-purpose", "any", "-out", os.devnull]
    assert subprocess.run(openssl, capture_output=True).returncode == 0
    (tmp_path / "m").write_bytes(b"0000" + manifest[4:])  # one digest changed
    assert subprocess.run(openssl, capture_output=True).returncode != 0
    with pytest.raises(package.CmsError, match="manifeste modifié"):
        package.verify_cms_detached(sig, (tmp_path / "m").read_bytes())
    broken = bytearray(sig)
    broken[-3] ^= 0x01
    with pytest.raises(package.CmsError):
        package.verify_cms_detached(bytes(broken), manifest)


# ------------------------------------------------------------------------------ verify-package, hand-made archives
def campaign_results() -> bytes:
    return json.dumps({"run": {"id": "r", "verdict": "CONFORME (campagne de référencement)", "exit_code": 0},
                       "sut": {"name": "n"}, "harness": {"catalogue_version": "1"},
                       "campaign": {"mode": "full", "referencing": True, "out_of_referencing": False}}).encode()


def make_package(path: Path, files: dict[str, bytes] | None = None, *, manifest_files: dict[str, bytes] | None = None,
                 extra: dict[str, bytes] | None = None, signer=None) -> Path:
    files = files if files is not None else {
        "report.html": b"<html>", "results.json": campaign_results(), "junit.xml": b"<testsuite/>",
        "sut.toml": b"[sut]", "configuration.json": b"{}", "versions.json": b"{}", "evidence/s/001-a.json": b"{}"}
    manifest = package.manifest_text(manifest_files if manifest_files is not None else files)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in {**files, **(extra or {})}.items():
            zf.writestr(name, data)
        zf.writestr(package.MANIFEST, manifest)
        if signer is not None:
            zf.writestr(package.SIGNATURE, package.sign_manifest(manifest, signer))
    return path


def test_verify_package_accepts_a_consistent_package_and_names_every_problem(tmp_path):
    assert verify_package.verify(make_package(tmp_path / "ok.zip")).valid
    base = {"report.html": b"<html>", "results.json": campaign_results(), "junit.xml": b"<testsuite/>",
            "sut.toml": b"[sut]", "configuration.json": b"{}", "versions.json": b"{}"}
    tampered = verify_package.verify(make_package(tmp_path / "t.zip", {**base, "sut.toml": b"[sut]\n#x"},
                                                  manifest_files=base))
    assert tampered.problems == ["empreinte SHA-256 différente du manifeste (fichier modifié) : sut.toml"]
    extra = verify_package.verify(make_package(tmp_path / "e.zip", base, extra={"evidence/new.json": b"{}"}))
    assert extra.problems == ["fichier absent du manifeste (ajouté ?) : evidence/new.json"]
    missing = dict(base)
    del missing["junit.xml"]
    gone = verify_package.verify(make_package(tmp_path / "m.zip", missing, manifest_files=base))
    assert gone.problems == ["fichier du manifeste absent de l'archive (supprimé ?) : junit.xml"]
    partial = verify_package.verify(make_package(tmp_path / "p.zip", {**base, "results.json": campaign_results()
                                                                      .replace(b'"full"', b'"partial"')}))
    assert "campagne de référencement complète" in partial.problems[0]


def test_verify_package_refuses_zip_slip_links_and_bombs_without_extracting(tmp_path):
    slip = verify_package.verify(make_package(tmp_path / "s.zip", extra={"../../etc/cron.d/x": b"boom"}))
    assert not slip.valid and "zip-slip" in slip.problems[0]
    absolute = verify_package.verify(make_package(tmp_path / "a.zip", extra={"/tmp/x": b"boom"}))
    assert not absolute.valid and "zip-slip" in absolute.problems[0]
    link_zip = tmp_path / "l.zip"
    make_package(link_zip)
    with zipfile.ZipFile(link_zip, "a") as zf:
        info = zipfile.ZipInfo("evidence/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    assert "lien symbolique" in verify_package.verify(link_zip).problems[0]
    bomb = verify_package.verify(make_package(tmp_path / "b.zip", extra={"evidence/zeros.json": bytes(20 * 1024 * 1024)}))
    assert not bomb.valid and "bombe zip" in bomb.problems[0]
    assert not (tmp_path / "etc").exists() and not Path("/tmp/x").exists()
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 nothing")
    proc = drimcheck("verify-package", str(tmp_path / "not.zip"))
    assert "archive zip illisible" in one_line_error(proc)


def test_verify_package_checks_the_signature_and_the_expected_signer(tmp_path):
    cert, key = operator_identity(tmp_path, "rsa")
    other_cert, _ = operator_identity(tmp_path, "ec")
    signed = make_package(tmp_path / "signed.zip", signer=package.load_signer(cert, key))
    proc = drimcheck("verify-package", str(signed), "--expect-signer", str(cert))
    assert proc.returncode == 0 and "CN=Opérateur de référencement (test)" in proc.stdout, proc.stdout
    proc = drimcheck("verify-package", str(signed), "--expect-signer", str(other_cert))
    assert proc.returncode == 1 and "certificat attendu" in proc.stdout
    # a consistent rewrite of the manifest (file changed, manifest recomputed) breaks the signature
    with zipfile.ZipFile(signed) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["sut.toml"] = b"[sut]\nforged = true"
    members[package.MANIFEST] = package.manifest_text(
        {n: d for n, d in members.items() if n not in (package.MANIFEST, package.SIGNATURE)})
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    report = verify_package.verify(forged)
    assert report.signed and report.problems == [
        "signature CMS : l'empreinte signée ne correspond pas au manifeste (manifeste modifié)"]


# ------------------------------------------------------------------------------ real campaigns
def test_loosened_bound_on_a_slow_recovery_is_hors_referencement_and_exits_non_zero(tmp_path):
    """Regression (issue 10): health_up_s = 30 let health-slow-recovery pass HLT-03 and exit 0 as CONFORME."""
    out = tmp_path / "run"
    proc = drimcheck("run", "--sut", str(reference_sut(tmp_path, health_up_s=30)), "--mutant", "health-slow-recovery",
                     "--req", "HLT-03", "--out", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HORS RÉFÉRENCEMENT" in proc.stdout and "health_up_s = 30 s" in proc.stderr
    verdict_line = next(l for l in proc.stdout.splitlines() if l.startswith("Verdict : "))
    assert verdict_line.startswith("Verdict : mutant health-slow-recovery, HORS RÉFÉRENCEMENT")
    assert "pas un verdict de conformité" in verdict_line and "campagne partielle" in verdict_line
    data = json.loads((out / "results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    c = data["campaign"]
    assert c["mode"] == "mutant" and c["mutant"] == "health-slow-recovery" and c["out_of_referencing"]
    assert c["requirements_selected"] == ["HLT-03"] and "SRC-01" in c["requirements_not_run"]
    assert c["sut_sha256"] == hashlib.sha256((tmp_path / "sut.toml").read_bytes()).hexdigest()
    assert {t["name"]: (t["value_s"], t["normative_bound_s"], t["status"]) for t in c["timeouts"]}["health_up_s"] == \
        (30.0, 10.0, "loosened")
    hlt03 = next(r for r in data["requirements"] if r["id"] == "HLT-03")
    assert hlt03["verdict"] == "WARN" and "hors référencement" in hlt03["messages"][0]
    html = (out / "report.html").read_text()
    assert "HORS RÉFÉRENCEMENT" in html and "Borne normative 10 s" in html and "RELÂCHÉE" in html
    props = {p.get("name"): p.get("value") for p in ET.parse(out / "junit.xml").getroot().find("properties")}
    assert props["out_of_referencing"] == "true" and props["mode"] == "mutant"
    assert props["timeout.health_up_s"] == "30 (borne normative 10, loosened)" and props["sut_sha256"] == c["sut_sha256"]


def test_partial_run_forced_into_an_old_run_directory_is_labelled_and_clean(tmp_path):
    out = tmp_path / "run"
    (out / "evidence" / "ancien-scenario").mkdir(parents=True)
    (out / "evidence" / "ancien-scenario" / "001-x.json").write_text("{}")
    (out / "results.json").write_text("{}")
    proc = drimcheck("run", "--req", "HLT-06", "--force", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict_line = next(l for l in proc.stdout.splitlines() if l.startswith("Verdict : "))
    assert verdict_line.startswith("Verdict : CONFORME (campagne partielle : ") and f"exigences sur {len(catalogue_load().requirements)})" in verdict_line
    assert not (out / "evidence" / "ancien-scenario").exists()
    data = json.loads((out / "results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["campaign"]["mode"] == "partial" and data["campaign"]["requirements_selected"] == ["HLT-06"]
    assert data["run"]["verdict"].startswith("CONFORME (campagne partielle") and "--force" in data["run"]["command"]
    assert "campagne partielle" in (out / "report.html").read_text()


def test_signed_referencing_package_is_produced_verified_and_tamper_evident(tmp_path):
    cert, key = operator_identity(tmp_path, "rsa")
    out = tmp_path / "ref"
    proc = drimcheck("run", "--referencement", "--sign-cert", str(cert), "--sign-key", str(key), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict : CONFORME (campagne de référencement)" in proc.stdout and "Paquet de référencement" in proc.stdout
    [zip_path] = list(out.glob("referencement-*.zip"))
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert {"report.html", "results.json", "junit.xml", "sut.toml", "configuration.json", "versions.json",
                package.MANIFEST, package.SIGNATURE} <= names
        assert any(n.startswith("evidence/") for n in names)
        versions = json.loads(zf.read("versions.json"))
        assert versions["drimcheck"] and versions["pydicom"] and versions["orthanc"].startswith("Orthanc")
        assert json.loads(zf.read("configuration.json"))["campaign"]["referencing"] is True
        assert zf.read("sut.toml") == config.reference_text().encode()
        manifest, sig = zf.read(package.MANIFEST), zf.read(package.SIGNATURE)
        members = {n: zf.read(n) for n in names}
    listed = {line.split("  ", 1)[1] for line in manifest.decode().splitlines()}
    assert listed == names - {package.MANIFEST, package.SIGNATURE}

    proc = drimcheck("verify-package", str(zip_path), "--expect-signer", str(cert))
    assert proc.returncode == 0 and "Paquet : VALIDE" in proc.stdout and "CN=Opérateur de référencement" in proc.stdout
    (tmp_path / "manifest").write_bytes(manifest)
    (tmp_path / "manifest.p7s").write_bytes(sig)
    openssl = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "manifest.p7s"),
                              "-content", str(tmp_path / "manifest"), "-CAfile", str(cert), "-purpose", "any",
                              "-out", os.devnull], capture_output=True, text=True)
    assert openssl.returncode == 0, openssl.stderr

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in members.items():
            zf.writestr(n, d.replace(b'"verdict": "PASS"', b'"verdict": "FAIL"', 1) if n == "results.json" else d)
    proc = drimcheck("verify-package", str(tampered))
    assert proc.returncode == 1 and "fichier modifié) : results.json" in proc.stdout and "NON VALIDE" in proc.stdout
