"""The command line: one line and exit 2 on bad input; exit 3 and reports when the DUT cannot be reached."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drimcheck import config
from simulators.procutil import free_port

REPO = Path(__file__).resolve().parent.parent


def drimcheck(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drimcheck", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("drimcheck : erreur : ")
    return lines[0]


@pytest.mark.parametrize("args, fragment", [
    ([], "une commande est attendue : run, selftest, requirements, mutants, init, check-kos, check-sut, "
         "check-whitelist, diff, kit, rejudge, serve, worker, users, verify-package"),
    (["run", "--bogus"], "arguments non reconnus : --bogus (voir « drimcheck --help »)"),
    (["frobnicate"], "argument COMMANDE : choix invalide : 'frobnicate'"),
    (["selftest", "--jobs", "x"], "argument --jobs : valeur invalide"),
    (["check-kos"], "arguments obligatoires manquants : FICHIER (voir « drimcheck check-kos --help »)"),
    (["run", "--out"], "argument --out : une valeur est attendue"),
    (["run", "--sut", "/nonexistent/sut.toml"], "description du SUT /nonexistent/sut.toml : fichier introuvable (« drimcheck init » écrit un modèle)"),
    (["run", "--sut", "/dev/zero"], "fichier trop volumineux"),
    (["run", "--sut", "/tmp"], "est un répertoire"),
    (["check-sut", "/nonexistent/sut.toml"], "description du SUT /nonexistent/sut.toml : fichier introuvable (« drimcheck init » écrit un modèle)"),
    (["run", "--req", "NOPE-99"], "exigence(s) inconnue(s) : NOPE-99"),
    (["run", "--mutant", "no-such-mutant"], "mutant inconnu « no-such-mutant » (voir « drimcheck mutants »)"),
    (["selftest", "--jobs", "0"], "--jobs : au moins 1"),
    (["selftest", "--mutant", "no-such-mutant", "--out", "/nonexistent/st"], "mutant(s) inconnu(s) : no-such-mutant"),
])
def test_usage_errors_are_one_line_and_exit_2(args, fragment):
    proc = drimcheck(*args)
    assert proc.returncode == 2
    assert fragment in one_line_error(proc)


def test_malformed_sut_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "sut.toml"
    bad.write_text(config.template_text().replace('roles = ["source"]', "roles = 3"))
    proc = drimcheck("run", "--sut", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "[sut] roles : une liste non vide" in one_line_error(proc)


@pytest.mark.parametrize("old, new, fragment", [
    ('before_campaign = ""', 'before_campain = "true"', "clé inconnue [hooks] before_campain (vouliez-vous dire before_campaign ?)"),
    ("request_s = 5", "request_s = inf", "[timeouts] request_s : une durée en secondes > 0 et ≤ 3600"),
    ("health_up_s = 10", "health_up_s = inf", "[timeouts] health_up_s"),
    ('dmp = "127.0.0.1:19443"', 'dmp = "127.0.0.1:9443"', "conflit d'adresses"),
])
def test_sut_mistakes_stop_the_run_before_anything_starts(tmp_path, old, new, fragment):
    """Before: a hook typo surfaced 15 s later as "DUT injoignable", request_s = inf as an OverflowError (exit 3)."""
    bad = tmp_path / "sut.toml"
    text = config.template_text()
    assert old in text
    bad.write_text(text.replace(old, new))
    proc = drimcheck("run", "--sut", str(bad), "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2 and fragment in one_line_error(proc)
    assert not (tmp_path / "out" / "results.json").exists()


def test_check_sut_prints_the_effective_configuration(tmp_path):
    sut = tmp_path / "sut.toml"
    sut.write_text(config.template_text().replace("request_s = 5", "request_s = 7"))
    proc = drimcheck("check-sut", str(sut))
    assert proc.returncode == 0 and proc.stderr == ""
    assert "description du SUT valide" in proc.stdout and "[timeouts]" in proc.stdout
    assert re.search(r"request_s\s+7 s", proc.stdout) and re.search(r"quiet_s\s+1.5 s", proc.stdout)
    assert re.search(r"dmp\s+127.0.0.1:19443", proc.stdout) and "[[pacs]] n°1" in proc.stdout
    data = json.loads(drimcheck("check-sut", str(sut), "--json").stdout)
    assert data["valid"] is True and data["timeouts"]["request_s"] == 7.0 and data["timeouts"]["export_s"] == 10.0
    assert data["simulators"]["dmp"] == "127.0.0.1:19443" and data["network"]["db1.349.mesimagesmedicales.fr"]["https"] == "127.0.0.1:8443"
    assert data["hooks"] == {} and data["dut"]["mllp"] == "127.0.0.1:2575"
    embedded = json.loads(drimcheck("check-sut", "--json").stdout)
    assert embedded["sut"]["embedded"] == "reference" and embedded["simulators"]["dmp"] == "auto"


def test_check_sut_refuses_an_invalid_description_in_one_line(tmp_path):
    sut = tmp_path / "sut.toml"
    sut.write_text(config.template_text().replace('igc = "127.0.0.1:18080"', 'pcs = "127.0.0.1:18080"'))
    for extra in ([], ["--json"]):
        proc = drimcheck("check-sut", str(sut), *extra)
        assert proc.returncode == 2 and proc.stdout == ""
        assert "clé inconnue [simulators] pcs (vouliez-vous dire psc ?)" in one_line_error(proc)


def test_mutant_only_applies_to_the_embedded_reference(tmp_path):
    sut = tmp_path / "sut.toml"
    sut.write_text(config.template_text())
    proc = drimcheck("run", "--sut", str(sut), "--mutant", "health-always-up")
    assert proc.returncode == 2 and "DRIMbox de référence intégrée" in one_line_error(proc)


def test_init_writes_a_valid_template_and_refuses_to_overwrite(tmp_path):
    proc = drimcheck("init", "--out", str(tmp_path / "sut.toml"))
    assert proc.returncode == 0
    config.load(tmp_path / "sut.toml")
    again = drimcheck("init", "--out", str(tmp_path / "sut.toml"))
    assert again.returncode == 2 and "existe déjà" in one_line_error(again)
    nowhere = drimcheck("init", "--out", str(tmp_path / "missing-dir" / "sut.toml"))
    assert nowhere.returncode == 2 and "écriture de" in one_line_error(nowhere)
    assert drimcheck("check-sut", str(tmp_path / "sut.toml")).returncode == 0


def test_requirements_lists_coverage():
    proc = drimcheck("requirements", "--json")
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0 and any(r["automated"] for r in rows) and any(not r["automated"] for r in rows)
    text = drimcheck("requirements").stdout
    assert "HLT-02" in text and "exigences automatisées sur" in text


def external_sut(tmp_path: Path, https_port: int) -> Path:
    """A sut.toml for an external DUT on loopback, with free ports for the PACS simulator."""
    text = (config.template_text()
            .replace("dicom_port = 14242", f"dicom_port = {free_port()}")
            .replace("http_port = 18042", f"http_port = {free_port()}")
            .replace('https = "127.0.0.1:8443"', f'https = "127.0.0.1:{https_port}"')
            .replace("request_s = 5", "request_s = 1"))
    path = tmp_path / "sut.toml"
    path.write_text(text)
    return path


def assert_reports_written(out: Path) -> dict:
    for name in ("results.json", "junit.xml", "report.html"):
        assert (out / name).is_file(), name
    assert (out / "evidence").is_dir()
    return json.loads((out / "results.json").read_text())


def test_unreachable_dut_gives_exit_3_with_errors_in_the_reports(tmp_path):
    out = tmp_path / "out"
    proc = drimcheck("run", "--sut", str(external_sut(tmp_path, free_port())), "--out", str(out), "--quiet")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "Verdict : INDÉTERMINÉ (erreur d'exécution)"  # --quiet: the verdict line only
    data = assert_reports_written(out)
    assert data["run"]["exit_code"] == 3 and data["scenarios"]
    assert all(s["verdict"] == "ERROR" for s in data["scenarios"])
    assert "connection refused" in data["scenarios"][0]["error"]


def test_dut_that_accepts_tcp_and_never_answers_ends_in_error_within_the_request_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # never answers, never closes
            except OSError:
                pass

    t = threading.Thread(target=accept_and_hold, daemon=True)
    t.start()
    try:
        out = tmp_path / "out"
        proc = drimcheck("run", "--sut", str(external_sut(tmp_path, listener.getsockname()[1])), "--out", str(out), "--quiet")
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        listener.close()
    assert proc.returncode == 3
    data = assert_reports_written(out)
    assert accepted, "the harness never connected"
    assert all(s["verdict"] == "ERROR" for s in data["scenarios"])
    assert "within 1 s" in data["scenarios"][0]["error"]


def test_run_printing_into_a_closed_pipe_keeps_its_exit_code_and_writes_its_reports(tmp_path):
    """`drimcheck run | head -1`: the campaign goes on quietly; its exit code and reports are unchanged."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    out = tmp_path / "out"
    try:
        proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--sut", str(external_sut(tmp_path, free_port())),
                               "--out", str(out)], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 3 and proc.stderr == "", proc.stderr
    assert assert_reports_written(out)["run"]["exit_code"] == 3


ENGLISH = re.compile(r"\b(usage|options:|positional arguments|show this help|the|default|only|with|print|file|"
                     r"error|required|invalid|unrecognized|expected)\b", re.I)


def cli_output(capsys, *args: str) -> tuple[int, str, str]:
    from drimcheck import cli

    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_of_every_command_is_french_argparse_words_included(capsys):
    from drimcheck import cli

    names = cli.command_names()
    assert {"run", "selftest", "requirements", "mutants", "init", "check-kos", "check-sut", "check-whitelist", "kit",
            "verify-package"} <= set(names)
    for args in ([], *([n] for n in names)):
        code, out, err = cli_output(capsys, *args, "--help")
        assert code == 0 and err == ""
        assert out.startswith("utilisation : drimcheck") and "afficher cette aide et quitter" in out, args
        assert "options :" in out
        bad = ENGLISH.findall(out.replace("drimcheck", ""))
        assert bad == [], f"{args}: {bad}"
    code, out, _ = cli_output(capsys, "--help")
    assert all(n in out for n in names) and "commandes :" in out


def test_argparse_is_english_again_outside_drimcheck(capsys):
    import argparse

    cli_output(capsys, "--help")
    assert argparse._("usage: ") == "usage: "
    assert "usage:" in argparse.ArgumentParser(prog="x").format_help()


def test_bare_drimcheck_lists_every_command(capsys):
    from drimcheck import cli

    code, out, err = cli_output(capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("drimcheck : erreur : une commande est attendue : ")
    assert all(name in err for name in cli.command_names())


def test_requirements_shows_citations_and_never_none(capsys):
    code, out, _ = cli_output(capsys, "requirements")
    assert code == 0 and "None" not in out
    assert "sources : Guide d'intégration à l'Espace de Confiance DRIM-M v1.1 (2025-09-17) — §2.4" in out
    assert re.search(r"PERF-01 .*\n\s+sources : .*\n\s+non testé : Mesuré par les benchmarks", out)


def test_requirements_without_any_check_says_why_not_none(capsys, monkeypatch):
    """Installed without features/ (e.g. a wheel missing them), nothing is automated: no « non testé : None »."""
    from drimcheck import coverage

    rows = [dict(r, automated=False, not_tested=None) for r in coverage.coverage_rows()]
    monkeypatch.setattr(coverage, "coverage_rows", lambda: rows)
    code, out, _ = cli_output(capsys, "requirements")
    assert code == 0 and "None" not in out and "non testé : aucun contrôle automatisé" in out


ANS = Path("/work/shared/ansdata")
KOS = REPO / "fixtures"


def test_check_kos_json_has_a_verdict(capsys):
    kos = next(iter(sorted(REPO.glob("fixtures/**/*.dcm"))), None) or ANS / "kos" / "kos-from-publication.dcm"
    if not kos.is_file():
        pytest.skip("no KOS sample")
    code, out, _ = cli_output(capsys, "check-kos", str(kos), "--json")
    data = json.loads(out)
    assert data["verdict"] == {0: "CONFORME", 1: "NON CONFORME"}.get(code, "ERREUR D'EXÉCUTION")
    assert data["exit_code"] == code


def test_check_kos_on_a_dicom_file_without_sop_class_is_one_french_line(tmp_path, capsys):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.PatientID = "x"
    ds.StudyInstanceUID = "1.2.3"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    path = tmp_path / "nosop.dcm"
    ds.save_as(path, enforce_file_format=True)
    for extra in ([], ["--json"]):
        code, out, err = cli_output(capsys, "check-kos", str(path), *extra)
        assert code == 2 and out == "" and len(err.splitlines()) == 1
        assert err.startswith("drimcheck : erreur : ") and "sans SOPClassUID" in err
        assert "object has no attribute" not in err and "FileDataset" not in err


def test_check_sut_json_has_a_verdict(capsys):
    code, out, _ = cli_output(capsys, "check-sut", "--json")
    assert code == 0 and json.loads(out)["verdict"] == "VALIDE"


def test_check_whitelist_without_crl_hints_at_crl_options_and_lists_no_domain(capsys):
    from drimcheck.whitelist import default_trust_anchors  # noqa: F401 - the shipped TEST anchors

    sample = ANS / "whitelist" / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST-current.xml"
    if not sample.is_file():
        pytest.skip("ANS sample not available")
    code, out, _ = cli_output(capsys, "check-whitelist", str(sample), "--at", "2026-12-01T00:00:00Z")
    assert code == 1 and "NON VALIDE" in out
    hint = next(line for line in out.splitlines() if line.strip().startswith("indice :"))
    assert "--crl FICHIER" in hint and "--no-revocation" in hint
    code, out, _ = cli_output(capsys, "check-whitelist", str(sample), "--at", "2026-12-01T00:00:00Z", "--json")
    data = json.loads(out)
    assert code == 1 and data["verdict"] == "NON VALIDE" and data["valid"] is False
    assert data["domains"] == [] and data["domain_count"] > 0 and "--no-revocation" in data["hint"]
    code, out, _ = cli_output(capsys, "check-whitelist", str(sample), "--at", "2026-12-01T00:00:00Z", "--json",
                              "--no-revocation")
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "VALIDE" and data["hint"] is None
    assert len(data["domains"]) == data["domain_count"] > 0


def test_verify_package_json_has_a_verdict(tmp_path, capsys):
    import zipfile

    pkg = tmp_path / "p.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("results.json", "{}")
    code, out, err = cli_output(capsys, "verify-package", str(pkg), "--json")
    assert code in (1, 2)
    if code == 1:
        assert json.loads(out)["verdict"] == "NON VALIDE"
    else:
        assert err.startswith("drimcheck : erreur : ")
