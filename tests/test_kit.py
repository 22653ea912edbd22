"""`drimcheck kit`: the stable test kit of an external DRIMbox, its dut-settings.json, and its reuse by campaigns."""

from __future__ import annotations

import json
import re
import socket
import ssl
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drimcheck import kit
from drimcheck.config import load, parse

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "external-dut" / "sut.toml"
DAYS = 30


def example_sut_text(kit_dir: Path | None = None) -> str:
    """The external example's sut.toml on ports 247xx (so it never collides with tests/test_external_dut.py)."""
    text = re.sub(r"\b246(\d\d)\b", r"247\1", EXAMPLE.read_text(encoding="utf-8"))
    if kit_dir is not None:
        text = text.replace('kit = "kit"', f'kit = "{kit_dir}"')
    return text


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("kit")
    out = root / "kit"
    sut_file = root / "sut.toml"
    sut_file.write_text(example_sut_text(out), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "kit", "--sut", str(sut_file), "--out", str(out),
                           "--days", str(DAYS)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "Kit de test créé" in proc.stdout
    return out, json.loads(kit.settings_path(out).read_text(encoding="utf-8"))


def dut_files(out: Path) -> list[Path]:
    return [p for p in kit.dut_dir(out).rglob("*") if p.is_file()]


def test_kit_holds_every_file_the_dut_needs_with_private_keys_0600(made):
    out, doc = made
    dut = kit.dut_dir(out)
    sut = parse(example_sut_text(), "x")
    for p in sut.pacs:
        for fqdn, kind in ((p.db, "serv_ssl"), (p.vi, "market_ov")):
            files = doc["certificates"][kind][fqdn]
            assert {"cert", "key", "chain"} == set(files)
    for files in [*doc["certificates"]["serv_ssl"].values(), *doc["certificates"]["market_ov"].values(),
                  doc["certificates"]["org_auth_cli"], doc["certificates"]["org_sign"]]:
        for role, rel in files.items():
            path = dut / rel
            assert path.is_file(), rel
            assert stat.S_IMODE(path.stat().st_mode) == (0o600 if role == "key" else 0o644), rel
    for rel in doc["trust"].values():
        assert (dut / rel).is_file()
    assert (dut / "hosts").is_file() and (out / "README.txt").is_file()
    assert stat.S_IMODE(kit.harness_dir(out).stat().st_mode) == 0o700
    for key in (kit.harness_dir(out) / "ca").glob("*.key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(kit.settings_path(out).stat().st_mode) == 0o600  # it holds the PSC and DICOMweb secrets
    readme = (out / "README.txt").read_text(encoding="utf-8")
    for rel in ("harness/", "dut-settings.json", "trust/igc-chain.pem", "trust/market-root.pem",
                "certs/org-sign.cert.pem"):
        assert rel in readme


def test_dut_part_never_refers_to_the_harness_part_nor_holds_a_ca_key(made):
    out, doc = made
    ca_keys = [p.read_bytes() for p in (kit.harness_dir(out) / "ca").glob("*.key.pem")]
    assert len(ca_keys) == len(kit.KIT_CAS)
    for path in dut_files(out):
        data = path.read_bytes()
        assert b"harness" not in data, path
        assert not any(key.strip() in data for key in ca_keys), path
    # every file path the document gives is relative and inside dut/
    paths = [v for k, v in kit.table_rows(doc) if re.search(r"\.(pem|json)$", v) and not v.startswith("http")]
    assert paths
    for value in paths:
        assert not Path(value).is_absolute(), value
        resolved = (kit.dut_dir(out) / value).resolve()
        assert resolved.is_relative_to(kit.dut_dir(out).resolve()) and resolved.is_file(), value


def test_dut_settings_validates_against_its_published_schema(made):
    _, doc = made
    schema = json.loads((REPO / "docs" / "dut-settings.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["schema_version"] == "1.0"
    broken = {**doc, "pacs": [{**doc["pacs"][0], "dicom_port": 70000}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_dut_settings_give_every_url_host_and_secret_of_the_campaign(made):
    out, doc = made
    sut = parse(example_sut_text(out), "x")
    sims = doc["simulators"]
    assert sims["igc"]["url"] == f"http://{sut.simulator_address('igc')}"
    assert sims["whitelist"]["url"].startswith(f"https://{sut.simulator_address('whitelist')}/")
    assert {"repository_url", "registry_url", "patients_url"} <= set(sims["dmp"])
    assert sims["psc"]["discovery_url"].endswith("/.well-known/openid-configuration")
    assert sims["proxy"]["routes"]["psc"].startswith("https://")
    assert [p["whitelisted"] for p in sims["peers"]["peers"]] == [True, False]
    # every host name the URLs use is in the hosts map, with the address the simulator listens on
    for fqdn in (sims["dmp"]["fqdn"], sims["psc"]["fqdn"], sims["psc"]["wallet_fqdn"], sims["proxy"]["fqdn"],
                 *(p["fqdn"] for p in sims["peers"]["peers"])):
        assert fqdn in doc["hosts"], fqdn
        assert re.search(rf"^{re.escape(doc['hosts'][fqdn]['address'])}\t{re.escape(fqdn)}\t",
                         (kit.dut_dir(out) / "hosts").read_text(), re.M)
    assert doc["hosts"][sims["psc"]["fqdn"]]["port"] == sut.simulator_address("psc").port
    # stable secrets: the ones the kit keeps for the harness, the same the campaign's PSC and Orthanc use
    secrets = kit.read_manifest(out)["secrets"]
    assert doc["psc_client"]["client_secret"] == sims["psc"]["client_secret"] == secrets["psc_client_secret"]
    applied = kit.apply_to_sut(sut, out)
    for entry, pacs in zip(doc["pacs"], applied.pacs):
        assert (entry["dicomweb_user"], entry["dicomweb_password"]) == (pacs.dicomweb_user, pacs.dicomweb_password)
        assert entry["dicomweb_password"] and entry["dicom_port"] == pacs.dicom_port
    assert applied.dut["psc_client_secret"] == secrets["psc_client_secret"]
    assert doc["endpoints"]["mllp"] == str(sut.dut_address("mllp"))


def test_dut_certificates_chain_to_the_kit_cas_and_last_the_requested_days(made):
    out, doc = made
    manifest = kit.read_manifest(out)
    created = datetime.fromisoformat(manifest["created"])
    ca = {name: x509.load_pem_x509_certificate((kit.harness_dir(out) / f["cert"]).read_bytes())
          for name, f in manifest["cas"].items()}
    ca["igc_org"].verify_directly_issued_by(ca["igc_root"])
    dut = kit.dut_dir(out)

    def cert(files):
        return x509.load_pem_x509_certificate((dut / files["cert"]).read_bytes())

    for files in doc["certificates"]["serv_ssl"].values():
        cert(files).verify_directly_issued_by(ca["igc_org"])
    for files in doc["certificates"]["market_ov"].values():
        cert(files).verify_directly_issued_by(ca["market_ca"])
    for name in ("org_auth_cli", "org_sign"):
        leaf = cert(doc["certificates"][name])
        leaf.verify_directly_issued_by(ca["igc_org"])
        assert leaf.not_valid_after_utc - created == timedelta(days=DAYS)
    for name in kit.KIT_CAS:
        assert ca[name].not_valid_after_utc - created == timedelta(days=DAYS)
    trust = x509.load_pem_x509_certificates((dut / doc["trust"]["igc_chain"]).read_bytes())
    assert [c.subject for c in trust] == [ca["igc_org"].subject, ca["igc_root"].subject]
    assert x509.load_pem_x509_certificate((dut / doc["trust"]["market_root"]).read_bytes()) == ca["market_ca"]
    assert datetime.fromisoformat(doc["valid_until"]) == created + timedelta(days=DAYS)


def _handshake(address: str, fqdn: str, trust: Path) -> x509.Certificate:
    host, _, port = address.rpartition(":")
    ctx = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=fqdn) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_two_campaigns_with_the_kit_keep_the_dut_trust_anchors_and_issue_simulators_from_them(made, tmp_path):
    """Simulators started twice (as two campaigns do) present per-run certificates the DUT's kit files verify."""
    out, doc = made
    (tmp_path / "sut.toml").write_text(example_sut_text(out), encoding="utf-8")
    sut = kit.apply_to_sut(load(tmp_path / "sut.toml"), out)
    dut = kit.dut_dir(out)
    seen = []
    for run in range(2):
        holder = kit._SettingsRuntime(sut, out, tmp_path / f"run{run}")
        rt = holder.start()
        try:
            pki = rt.pki
            assert pki.igc_chain_pem.read_bytes() == (dut / doc["trust"]["igc_chain"]).read_bytes()
            assert pki.market_trust_pem.read_bytes() == (dut / doc["trust"]["market_root"]).read_bytes()
            # the DUT's own certificate is the kit's, not a new one
            db = sut.pacs[0].db
            assert pki.serv_ssl(db).cert.public_bytes(serialization.Encoding.PEM) == \
                (dut / doc["certificates"]["serv_ssl"][db]["cert"]).read_bytes()
            dmp = _handshake(rt.sims["dmp"].hosts()[doc["simulators"]["dmp"]["fqdn"]],
                             doc["simulators"]["dmp"]["fqdn"], dut / doc["trust"]["igc_chain"])
            psc = _handshake(doc["simulators"]["psc"]["address"], doc["simulators"]["psc"]["fqdn"],
                             dut / doc["trust"]["market_root"])
            # negative certificates are still minted per run: from the kit CA, or from a throwaway rogue CA
            expired = pki.negative("expired", db)
            expired.cert.verify_directly_issued_by(pki.igc_org.cert)
            wrong = pki.negative("wrong_ca", db).cert
            assert wrong.issuer == pki.igc_org.cert.subject  # same DN, another key: a throwaway rogue CA
            with pytest.raises(Exception):
                wrong.verify_directly_issued_by(pki.igc_org.cert)
            assert pki.rogue_ca.cert != pki.igc_org.cert and "rogue_ca" not in pki.loaded()
            seen.append((dmp.serial_number, psc.serial_number, expired.serial))
        finally:
            holder.stop()
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1] and seen[0][2] != seen[1][2]


def test_kit_show_prints_the_settings_as_a_french_table(made):
    out, doc = made
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "kit", "--show", str(out)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Réglages de la DRIMbox testée")
    assert "Réglage" in proc.stdout and "Valeur" in proc.stdout
    for key, value in kit.table_rows(doc):
        assert re.search(rf"^{re.escape(key)} +{re.escape(value)}$", proc.stdout, re.M), key


@pytest.mark.parametrize("args, fragment", [
    (["--show", "/nonexistent/kit"], "pas un kit de test drimcheck"),
    (["--sut", "EMBEDDED", "--out", "OUT"], "DRIMbox externe"),
    (["--sut", "EXAMPLE", "--out", "KIT"], "n'est pas vide"),
    (["--sut", "EXAMPLE", "--out", "OUT", "--days", "0"], "--days"),
])
def test_kit_usage_errors_are_one_line_exit_2(made, tmp_path, args, fragment):
    out, _ = made
    embedded = tmp_path / "embedded.toml"
    embedded.write_text((REPO / "drimcheck" / "data" / "sut-reference.toml").read_text(encoding="utf-8"))
    example = tmp_path / "example.toml"
    example.write_text(example_sut_text())
    subst = {"EMBEDDED": str(embedded), "EXAMPLE": str(example), "OUT": str(tmp_path / "new"), "KIT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "kit", *[subst.get(a, a) for a in args]],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_campaign_refuses_a_kit_made_for_another_igc_address(made, tmp_path):
    out, _ = made
    with pytest.raises(kit.KitError, match="simulateur IGC"):
        kit.load_pki(out, tmp_path / "pki", "http://127.0.0.1:9")


def test_reference_configuration_from_the_kit_uses_only_dut_files(made, tmp_path):
    out, doc = made
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "external-dut" / "configure.py"), "--settings",
                           str(kit.settings_path(out)), "--workdir", str(tmp_path / "state"), "--mutant", "src-vihf-unsigned"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((tmp_path / "state" / "drimbox.json").read_text(encoding="utf-8"))
    assert cfg["mutant"] == "src-vihf-unsigned"
    dut = kit.dut_dir(out).resolve()
    files = [cfg["trust"][k] for k in ("igc_chain", "igc_root", "market_root")]
    files += [f for c in cfg["certs"].values() for f in c.values()]
    files += [lst["cert"] for lst in cfg["listeners"] if lst["scheme"] == "https"]
    files += [cfg["peers"]["whitelist"]["ca"], cfg["peers"]["dmp"]["server_ca"], cfg["peers"]["psc"]["ca_file"]]
    for f in files:
        assert Path(f).is_relative_to(dut) and Path(f).is_file(), f
    assert [p["password"] for p in cfg["pacs"]] == [p["dicomweb_password"] for p in doc["pacs"]]
    assert cfg["peers"]["psc"]["client_secret"] == doc["psc_client"]["client_secret"]


def test_a_busy_simulator_address_leaves_no_half_made_kit(tmp_path):
    sut_file = tmp_path / "sut.toml"
    text = re.sub(r"\b246(\d\d)\b", r"248\1", EXAMPLE.read_text(encoding="utf-8"))
    sut_file.write_text(text, encoding="utf-8")
    whitelist = parse(text, "x").simulator_address("whitelist")
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((whitelist.host, whitelist.port))
        busy.listen()
        proc = subprocess.run([sys.executable, "-m", "drimcheck", "kit", "--sut", str(sut_file), "--out",
                               str(tmp_path / "kit")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "whitelist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr
    assert not (tmp_path / "kit").exists()


def test_show_with_sut_and_out_shows_an_existing_kit_without_remaking_it(made):
    out, _ = made
    before = kit.manifest_path(out).read_bytes()
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "kit", "--sut", str(EXAMPLE), "--out", str(out), "--show"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "# Ses certificats et clés" in proc.stdout
    assert kit.manifest_path(out).read_bytes() == before


def test_run_with_an_expired_or_foreign_kit_is_a_configuration_error_before_anything_starts(made, tmp_path):
    """An expired kit, or one made for another IGC address, used to surface as a failed start-up (exit 3)."""
    out, _ = made
    expired = tmp_path / "expired"
    shutil.copytree(out, expired)
    manifest = kit.manifest_path(expired)
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["valid_until"] = "2020-01-01T00:00:00+00:00"
    manifest.write_text(json.dumps(data), encoding="utf-8")
    cases = ((example_sut_text(expired), "expiré depuis le 2020-01-01"),
             (example_sut_text(out).replace("127.0.0.1:24721", "127.0.0.1:24799"), "simulateur IGC"),
             (example_sut_text(tmp_path / "absent"), "pas un kit de test drimcheck"))
    igc = re.search(r'igc = "([^"]+)"', example_sut_text(out))
    assert igc and igc.group(1) == "127.0.0.1:24721", "the example's IGC address moved: update this test"
    for i, (text, fragment) in enumerate(cases):
        sut_file = tmp_path / f"sut-{i}.toml"
        sut_file.write_text(text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--sut", str(sut_file), "--out",
                               str(tmp_path / f"run-{i}"), "--quiet"], capture_output=True, text=True, timeout=60,
                              cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
