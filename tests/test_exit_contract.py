"""The exit-code contract holds for every input (issue 11, deliverable 5).

Any sut.toml, argument or file gives exit 2 and one line on stderr, never a traceback (property-based
tests with hypothesis over sut.toml structures and byte strings); the offline checkers cap their input
before parsing; a closed pipe and a full disk end quietly; reports stay valid whatever the SUT strings
contain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drimcheck import config
from drimcheck.cli import main

REPO = Path(__file__).resolve().parent.parent
KOS = REPO / "fixtures" / "ans" / "kos" / "poc-kos.dcm"
WHITELIST = REPO / "fixtures" / "ans" / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST-current.xml"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                database=None)  # deterministic, nothing written into the work tree


def run_main(*args: str) -> tuple[int, str, str]:
    """drimcheck.cli.main in-process, with its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def drimcheck(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "drimcheck", *args], text=True, cwd=REPO, timeout=timeout, **kw)


def assert_contract(code: int, err: str, allowed: set[int]) -> None:
    assert code in allowed, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 1, err
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("drimcheck : erreur : "), err


# ------------------------------------------------------------------------------------------- TOML writer

def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict) -> str:
    """Top-level tables as [sections], lists of tables as [[arrays]], everything else inline."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(i, dict) for i in v))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += [f"[{toml_key(k)}]", *(f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items())]
        elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            for item in v:
                lines += [f"[[{toml_key(k)}]]", *(f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in item.items())]
    return "\n".join(lines) + "\n"


TEMPLATE = tomllib.loads(config.template_text())
KNOWN_KEYS = sorted({k for section in TEMPLATE.values() for t in (section if isinstance(section, list) else [section])
                     if isinstance(t, dict) for k in t} | set(config.TIMEOUT_KEYS) | set(config.HOOK_KEYS))
names = st.one_of(st.sampled_from(KNOWN_KEYS + list(config.SECTIONS)), st.text(min_size=1, max_size=12))
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.sampled_from([0, 1, 443, 65535, 65536]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 5.0, 3600.0, 3600.5]),
    st.text(max_size=30),
    st.sampled_from(["auto", "127.0.0.1:8443", "0.0.0.0:9443", "[::1]:1", "localhost:0", "host:99999", "a:b:c",
                     "https://db1.349.mesimagesmedicales.fr/q/health", "db1.349.mesimagesmedicales.fr", "source",
                     "conso", "reference", "349", "DRIMCHECK_PACS", "X" * 17, "/api/source", ""]),
)
values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=3),
                                                          st.dictionaries(names, children, max_size=3)), max_leaves=8)


@st.composite
def mutated_template(draw) -> str:
    """The template (valid) with a few random edits: deep enough to reach every validation."""
    data = json.loads(json.dumps(TEMPLATE))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        section = draw(st.sampled_from(sorted(data) + ["nope"]))
        target = data.get(section)
        if isinstance(target, list):
            target = target[0] if target else {}
        action = draw(st.sampled_from(["set", "delete", "add", "replace-section"]))
        if action == "replace-section" or not isinstance(target, dict):
            data[section] = draw(values)
        elif action == "delete" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif action == "set" and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(values)
        else:
            target[draw(names)] = draw(values)
    return toml_document(data)


random_documents = st.dictionaries(names, values, max_size=6).map(toml_document)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("contract")


@FUZZ
@given(text=st.one_of(mutated_template(), random_documents))
def test_any_sut_toml_gives_exit_0_or_2_and_at_most_one_line(work, text):
    path = work / "sut.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, out, err = run_main("check-sut", str(path))
    assert_contract(code, err, {0, 2})
    if code == 0:
        assert "description du SUT valide" in out


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000),
                      st.builds(lambda t, cut: t.encode()[:cut], mutated_template(), st.integers(0, 4000))))
def test_any_bytes_as_sut_toml_gives_exit_0_or_2(work, data):
    path = work / "sut.bin"
    path.write_bytes(data)
    code, _, err = run_main("check-sut", str(path))
    assert_contract(code, err, {0, 2})


def test_mutated_templates_reach_both_outcomes(work):
    """The generator is not trivial: valid descriptions and every kind of refusal both occur."""
    seen: set[int] = set()

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(text=mutated_template())
    def probe(text):
        path = work / "probe.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        seen.add(run_main("check-sut", str(path))[0])

    probe()
    assert seen == {0, 2}


@pytest.mark.parametrize("content", [
    b"\xff\xfe[sut]", b"[sut]\nname = \"\\ud800\"\n", b"a = " + b"[" * 3000 + b"]" * 3000,
    config.template_text().replace("request_s = 5", "request_s = 1e308").encode(),
])
def test_pathological_sut_via_the_real_command(tmp_path, content):
    path = tmp_path / "sut.toml"
    path.write_bytes(content)
    proc = drimcheck("check-sut", str(path))
    assert_contract(proc.returncode, proc.stderr, {2})


arguments = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(
    ["--json", "--strict", "--fqdn", "--at", "--crl", "--trust-anchor", "--no-revocation", "--help", "-", "--", ".",
     "/", "/dev/null", "db1.349.mesimagesmedicales.fr", "2025-13-45", str(KOS), str(WHITELIST)])), max_size=5)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(command=st.sampled_from(["check-sut", "check-kos", "check-whitelist", "requirements", "mutants", "nope"]),
       args=arguments)
def test_any_arguments_to_the_offline_commands_follow_the_contract(command, args):
    code, _, err = run_main(command, *args)
    assert_contract(code, err, {0, 1, 2})


# ------------------------------------------------------------------------------------------- offline checkers

@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_to_check_kos_and_check_whitelist(work, data):
    path = work / "input.bin"
    path.write_bytes(data)
    code, _, err = run_main("check-kos", str(path))
    assert_contract(code, err, {0, 1, 2})
    code, _, err = run_main("check-whitelist", str(path), "--no-revocation")
    assert_contract(code, err, {0, 1, 2})


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(cut=st.integers(min_value=1, max_value=KOS.stat().st_size),
       flips=st.lists(st.tuples(st.integers(min_value=0, max_value=KOS.stat().st_size - 1), st.integers(0, 255)),
                      max_size=4))
def test_damaged_kos_to_check_kos(work, cut, flips):
    data = bytearray(KOS.read_bytes())
    for position, byte in flips:
        data[position] = byte
    path = work / "damaged.dcm"
    path.write_bytes(bytes(data[:cut]))
    code, _, err = run_main("check-kos", str(path))
    assert_contract(code, err, {0, 1, 2})


def element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def kos_header() -> bytes:
    return element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.88.59\x00") + element(0x0008, 0x0018, b"1.2.3.4\x00")


def nested(depth: int, *, undefined: bool) -> bytes:
    inner = b""
    for _ in range(depth):
        if undefined:
            inner = (struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                     + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        else:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = struct.pack("<HHI", 0x0040, 0xA730, len(item)) + item
    return kos_header() + inner


@pytest.mark.parametrize("name, content, fragment", [
    ("truncated", KOS.read_bytes()[:2000], "fichier tronqué (élément incomplet"),
    ("deep-undefined", nested(3000, undefined=True), "séquences imbriquées trop profondément"),
    ("deep-defined", nested(3000, undefined=False), "séquences imbriquées sur plus de 32 niveaux"),
    ("no-sop-class", element(0x0010, 0x0010, b"DOE^JOHN") + element(0x0010, 0x0020, b"12345678"),
     "fichier DICOM sans SOPClassUID : ce n'est pas un KOS"),
    ("empty", b"", "fichier vide"),
    ("tiny", b"DICM", "pas un fichier DICOM lisible"),
])
def test_check_kos_unusable_files_exit_2_in_one_french_line(tmp_path, name, content, fragment):
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(content)
    proc = drimcheck("check-kos", str(path))
    assert_contract(proc.returncode, proc.stderr, {2})
    assert fragment in proc.stderr and "FileDataset" not in proc.stderr and "Error" not in proc.stderr


def test_check_kos_judges_a_moderately_nested_kos(tmp_path):
    path = tmp_path / "nested.dcm"
    path.write_bytes(nested(20, undefined=True))
    code, out, err = run_main("check-kos", str(path))
    assert code == 1 and err == "" and "Verdict : NON CONFORME" in out


# Peak RSS of this process's own address space: VmHWM (reset by execve), not getrusage's ru_maxrss, which Linux
# carries over an execve from the forking parent (a 375 MB pytest worker made every child look 375 MB).
PEAK = ("import sys\nfrom drimcheck.cli import main\ncode = main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(int(hwm) // 1024, file=sys.stdout)\nsys.exit(code)\n")


@pytest.mark.parametrize("args, fragment", [
    (["check-whitelist", "/dev/zero"], "liste blanche /dev/zero : fichier trop volumineux (plus de 16 Mio)"),
    (["check-whitelist", str(WHITELIST), "--crl", "/dev/zero"], "CRL /dev/zero : fichier trop volumineux (plus de 16 Mio)"),
    (["check-whitelist", str(WHITELIST), "--trust-anchor", "/dev/zero"], "ancre de confiance /dev/zero : fichier trop"),
    (["check-kos", "/dev/zero"], "KOS /dev/zero : fichier trop volumineux (plus de 64 Mio)"),
    (["check-sut", "/dev/zero"], "description du SUT /dev/zero : fichier trop volumineux (plus de 1 Mio)"),
])
def test_endless_inputs_end_in_exit_2_with_bounded_memory(args, fragment):
    proc = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert_contract(proc.returncode, proc.stderr, {2})
    assert fragment in proc.stderr
    peak_mb = int(proc.stdout.strip().splitlines()[-1])
    assert peak_mb < 250, f"peak {peak_mb} MB"  # the cap (at most 64 MiB) plus the interpreter and its libraries


def test_check_whitelist_directory_and_missing_file(tmp_path):
    for path, fragment in ((tmp_path, "est un répertoire"), (tmp_path / "absent.xml", "fichier introuvable")):
        code, _, err = run_main("check-whitelist", str(path))
        assert_contract(code, err, {2})
        assert fragment in err


# ------------------------------------------------------------------------------------------- pipes and disks

@pytest.mark.parametrize("args", [["requirements"], ["mutants"], ["requirements", "--json"], ["--help"],
                                  ["check-sut"]])
def test_a_closed_pipe_ends_quietly(args):
    """`drimcheck requirements | head -1`: before, a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write gets EPIPE, whatever the pipe buffer size
    try:
        proc = drimcheck(*args, stdout=write_end, stderr=subprocess.PIPE, capture_output=False)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_head_of_a_listing_through_a_real_shell_pipe():
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m drimcheck requirements | head -1", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and len(proc.stdout.splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("args", [["requirements"], ["mutants"], ["check-sut", "--json"]])
def test_a_full_disk_gives_one_line_and_exit_2(args):
    with open("/dev/full", "w") as full:
        proc = drimcheck(*args, stdout=full, stderr=subprocess.PIPE, capture_output=False)
    assert_contract(proc.returncode, proc.stderr, {2})
    assert "sortie standard impossible à écrire : plus d'espace disponible" in proc.stderr


def test_unexpected_exception_is_one_line_exit_3_with_traceback_on_demand(monkeypatch):
    import drimcheck.coverage

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(drimcheck.coverage, "coverage_rows", boom)
    code, _, err = run_main("requirements")
    assert code == 3 and err.strip() == "drimcheck : erreur interne : RuntimeError: boom"
    monkeypatch.setenv("DRIMCHECK_DEBUG", "1")
    code, _, err = run_main("requirements")
    assert code == 3 and "Traceback" in err and err.strip().endswith("drimcheck : erreur interne : RuntimeError: boom")


def test_help_and_version_return_instead_of_raising():
    code, out, _ = run_main("--version")
    assert code == 0 and out.startswith("drimcheck ")
    code, out, _ = run_main("check-sut", "--help")
    assert code == 0 and "--json" in out


# ------------------------------------------------------------------------------------------- reports

NASTY = "DRIMbox\x00\x01\x08\x0b\x1b[31m\x7f\x85\ud800\udfff\ufffe fin"


def test_reports_are_valid_whatever_the_sut_strings_contain(tmp_path):
    """Before: a SUT name with control characters made junit.xml invalid XML (and a lone surrogate broke results.json)."""
    import jsonschema
    from lxml import etree

    from drimcheck import catalogue
    from drimcheck.reports import write_all
    from drimcheck.results import RunResult, ScenarioResult
    from drimcheck.verdicts import Finding, Verdict

    sut = dataclasses.replace(config.load(None), name=NASTY, editor="Éditeur\x02", version="1.0\x1f\udc80")
    scenario = ScenarioResult(id="s1", feature="Santé\x03", feature_file="features/x\x04.feature", name=f"scénario {NASTY}",
                              requirements=["HLT-01"],
                              findings=[Finding("HLT-01", Verdict.FAIL, f"réponse « {NASTY} »", check="c\x05")],
                              error=f"erreur {NASTY}")
    result = RunResult(run_id="r\x06", started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
                       duration_s=1.0, strict=False, sut=sut.describe(), catalogue=catalogue.load(),
                       scenarios=[scenario], automated_ids={"HLT-01"}, command=["drimcheck", f"--x={NASTY}"])
    paths = write_all(result, tmp_path)

    junit = paths["junit"].read_bytes()
    root = ET.fromstring(junit)  # strict XML 1.0 parsers accept it
    etree.fromstring(junit)
    sut_prop = [p.get("value") for p in root.iter("property") if p.get("name") == "sut"][0]
    assert sut_prop == "DRIMbox\\x00\\x01\\x08\\x0b\\x1b[31m\\x7f\\x85\\ud800\\udfff\\ufffe fin"

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(data, json.loads((REPO / "docs" / "results.schema.json").read_text()))
    assert data["sut"]["name"] == sut_prop and data["sut"]["version"] == "1.0\\x1f\\udc80"

    html = paths["html"].read_bytes().decode("utf-8")  # strict UTF-8: no lone surrogate
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", html)
    assert "DRIMbox\\x00" in html
