"""Fidelity of the TLS side: an outside scanner and drimcheck see the same thing.

sslyze (https://github.com/nabla-c0d3/sslyze, which brings its own OpenSSL builds, the legacy one with 3DES, RC4
and NULL suites) runs from a venv of its own, never the project's (it pins its own `cryptography`). It scans the
reference DRIMbox's real dbN and viN listeners (`python -m simulators.drimbox`, golden and the CRT-05 mutants) and
a real GnuTLS server that accepts TLS 1.0 only with 3DES (what Debian's OpenSSL 3 cannot negotiate any more). For
each, sslyze's verdict on TLS 1.0, 1.1 and 1.2 must be the one of drimcheck's CRT-05 probe (and of the CRT-05
check), and the chain sslyze received must be the one drimcheck records and judges (CRT-01, CRT-04).

Debian's testssl.sh 3.0.8 was tried too: its protocol test (`-p`) offers no NULL suite and reports TLS 1.0 "not
offered" on the `tls-legacy-ciphers-only` mutant, so it is not the scanner of reference here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from drimcheck.checks import tls as tls_checks
from drimcheck.checks import trust
from drimcheck.config import Address, Endpoint, Sut
from drimcheck.net import DutClient, probe_tls_version
from drimcheck.verdicts import Verdict
from fixtures.pki import TestPKI
from simulators.procutil import free_port

REPO = Path(__file__).resolve().parent.parent
SSLYZE = "sslyze==6.3.1"
DB, VI = "db1.349.mesimagesmedicales.fr", "vi1.349.mesimagesmedicales.fr"
VERSIONS = {"tls_1_0_cipher_suites": ssl.TLSVersion.TLSv1, "tls_1_1_cipher_suites": ssl.TLSVersion.TLSv1_1,
            "tls_1_2_cipher_suites": ssl.TLSVersion.TLSv1_2}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drimcheck"


@pytest.fixture(scope="session")
def sslyze() -> list[str]:
    """Command prefix running sslyze from its own venv (created once per user and version, out of the repo)."""
    venv = _cache_dir() / f"venv-{SSLYZE.replace('==', '-')}"
    python = venv / "bin" / "python"
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        building = venv.with_name(f".{venv.name}.{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
        pip = subprocess.run([str(building / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", SSLYZE],
                             capture_output=True, text=True, timeout=600)
        assert pip.returncode == 0, f"pip install {SSLYZE} failed: {pip.stderr[-2000:]}"
        try:
            building.rename(venv)  # a concurrent session may have finished first: keep its venv
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    return [str(python), "-m", "sslyze"]


def scan(sslyze: list[str], targets: list[str], out: Path, *extra: str) -> dict[str, dict]:
    """sslyze's scan_result per "fqdn:port" target (targets are "fqdn:port{ip}": SNI = FQDN, no DNS)."""
    cmd = [*sslyze, "--quiet", "--tlsv1", "--tlsv1_1", "--tlsv1_2", *extra, f"--json_out={out}", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"sslyze wrote nothing (exit {proc.returncode}): {proc.stdout[-1000:]} {proc.stderr[-1000:]}"
    results = {}
    for server in json.loads(out.read_text())["server_scan_results"]:
        where = server["server_location"]
        assert server["scan_status"] == "COMPLETED", server.get("connectivity_error_trace")
        results[f"{where['hostname']}:{where['port']}"] = server["scan_result"]
    return results


def sslyze_accepts(result: dict, key: str) -> bool:
    attempt = result[key]
    assert attempt["status"] == "COMPLETED", attempt.get("error_trace")
    return bool(attempt["result"]["accepted_cipher_suites"])


# --------------------------------------------------------------------------- the reference's listeners


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("fidelity-tls") / "pki")


class Reference:
    """The reference DRIMbox process with its dbN and viN HTTPS listeners only (function `trust`: the TLS policy)."""

    def __init__(self, pki: TestPKI, workdir: Path, mutant: str | None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {DB: free_port(), VI: free_port()}
        db, vi = pki.serv_ssl(DB), pki.market_ov(VI)
        listeners = [{"fqdn": fqdn, "role": role, "scheme": "https", "host": "127.0.0.1", "port": self.ports[fqdn],
                      "cert": str(cert.chain_path), "key": str(cert.key_path)}
                     for fqdn, role, cert in ((DB, "db", db), (VI, "vi", vi))]
        ready = workdir / "ready"
        config = {"name": "fidelite-tls", "registry": "349", "listeners": listeners, "pacs": [], "mutant": mutant,
                  "functions": ["trust"], "trust": {"igc_chain": str(pki.igc_chain_pem)}, "workdir": str(workdir),
                  "ready_file": str(ready)}
        path = workdir / "drimbox.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        self.log = workdir / "drimbox.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "simulators.drimbox", "--config", str(path)],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert self.proc.poll() is None, f"reference exited: {self.log.read_text()[-1500:]}"
            assert time.monotonic() < deadline, f"reference not ready in 30 s: {self.log.read_text()[-1500:]}"
            time.sleep(0.05)

    def sut(self) -> Sut:
        return Sut(name="fidelite", roles=("source",), registry="349", pacs=(), health_url=f"https://{DB}/q/health",
                   network={f: Endpoint(f, https=Address("127.0.0.1", p)) for f, p in self.ports.items()})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.mark.parametrize("mutant, legacy_accepted", [
    (None, False),
    ("tls-legacy-accepted", True),
    ("tls-legacy-ciphers-only", True),  # TLS 1.0/1.1 only with NULL suites: OpenSSL's "ALL" offers none of them
])
def test_sslyze_and_drimcheck_classify_the_reference_listeners_alike(sslyze, pki, tmp_path, mutant, legacy_accepted):
    reference = Reference(pki, tmp_path / "dut", mutant)
    try:
        anchors = tmp_path / "anchors.pem"  # what a DRIMbox peer trusts on dbN, what browsers trust on viN
        anchors.write_bytes(pki.igc_trust_pem.read_bytes() + pki.market_trust_pem.read_bytes())
        targets = [f"{fqdn}:{port}{{127.0.0.1}}" for fqdn, port in reference.ports.items()]
        scanned = scan(sslyze, targets, tmp_path / "sslyze.json", "--certinfo", f"--certinfo_ca_file={anchors}")
        client = DutClient(reference.sut(), None, timeout=5)
        for fqdn, port in reference.ports.items():
            result = scanned[f"{fqdn}:{port}"]
            probes = {}
            for key, version in VERSIONS.items():
                probe = probe_tls_version(Address("127.0.0.1", port), fqdn, version, timeout=5)
                probes[key] = probe
                assert (probe.outcome == "accepted") is sslyze_accepts(result, key), (fqdn, key, probe.detail)
            assert sslyze_accepts(result, "tls_1_2_cipher_suites")
            for key in ("tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
                assert sslyze_accepts(result, key) is legacy_accepted, (fqdn, key)

            # CRT-05 judges the two legacy probes as sslyze saw them
            control = client.get(f"https://{fqdn}/", label="controle")
            legacy = [probes["tls_1_0_cipher_suites"], probes["tls_1_1_cipher_suites"]]
            verdict = trust.legacy_tls_refused(legacy, control, fqdn)[0].verdict
            assert verdict is (Verdict.FAIL if legacy_accepted else Verdict.PASS)

            # the chain: the certificates sslyze received are those drimcheck records, and both validate it alike
            deployment = result["certificate_info"]["result"]["certificate_deployments"][0]
            received = [x509.load_pem_x509_certificate(c["as_pem"].encode()) for c in deployment["received_certificate_chain"]]
            recorded = [x509.load_der_x509_certificate(der) for der in control.tls.chain_der]
            assert received and received == recorded
            supplied = [v for v in deployment["path_validation_results"] if v["trust_store"]["path"] == str(anchors)]
            assert supplied and supplied[0]["was_validation_successful"], supplied
            assert deployment["received_chain_has_valid_order"]  # sslyze's validation includes the FQDN (its SNI):
            assert result["certificate_info"]["result"]["hostname_used_for_server_name_indication"] == fqdn
            if fqdn == DB:
                judged = tls_checks.chains_to_igc_sante(control.tls, fqdn, [pki.igc_root.cert])
            else:
                judged = trust.market_certificate(control.tls, fqdn, [pki.market_ca.cert], [pki.igc_root.cert])
            assert [f.verdict for f in judged] == [Verdict.PASS], [f.message for f in judged]
    finally:
        reference.stop()


# --------------------------------------------------------------------------- a real 3DES-only TLS 1.0 server

_NAMESPACE_SCRIPT = r"""
import json, socket, ssl, subprocess, sys, time, warnings
from drimcheck.config import Address
from drimcheck.net import probe_tls_version
warnings.simplefilter("ignore", DeprecationWarning)
fqdn, cert, key, sslyze = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
priority = ("NONE:+VERS-TLS1.0:+VERS-TLS1.2:+3DES-CBC:+AES-128-GCM:+SHA1:+AEAD:+RSA:+ECDHE-RSA:+COMP-NULL:"
            "+SIGN-ALL:+GROUP-ALL:+CTYPE-X509")
server = subprocess.Popen(["gnutls-serv", "--port", "4433", "--x509certfile", cert, "--x509keyfile", key,
                           "--priority", priority], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", 4433), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "gnutls-serv did not listen"
            time.sleep(0.05)
    probes = {v.name: probe_tls_version(Address("127.0.0.1", 4433), fqdn, v, timeout=5).to_evidence()
              for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2)}
    out = sys.argv[5]
    subprocess.run([*sslyze, "--quiet", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--json_out=" + out,
                    f"{fqdn}:4433{{127.0.0.1}}"], capture_output=True, timeout=120)
    print(json.dumps(probes))
finally:
    server.terminate()
    server.wait(timeout=10)
"""


def _private_network_namespace() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0


@pytest.mark.skipif(not shutil.which("gnutls-serv"), reason="gnutls-serv absent (Debian gnutls-bin, make setup)")
@pytest.mark.skipif(not _private_network_namespace(), reason="no private network namespace (unshare -n needs root)")
def test_sslyze_and_drimcheck_see_a_3des_only_tls10_server_alike(sslyze, pki, tmp_path):
    """gnutls-serv binds every interface: it runs in a network namespace of its own, with the probe and sslyze."""
    cert = pki.serv_ssl(DB)
    out = tmp_path / "sslyze.json"
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", _NAMESPACE_SCRIPT, DB, str(cert.chain_path),
                           str(cert.key_path), json.dumps(sslyze), str(out)],
                          capture_output=True, text=True, timeout=180, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    probes = json.loads(proc.stdout)
    server = json.loads(out.read_text())["server_scan_results"][0]
    assert server["scan_status"] == "COMPLETED", server.get("connectivity_error_trace")
    result = server["scan_result"]
    accepted = {key: [s["cipher_suite"]["openssl_name"] for s in result[key]["result"]["accepted_cipher_suites"]]
                for key in VERSIONS}
    assert accepted["tls_1_0_cipher_suites"] and accepted["tls_1_1_cipher_suites"] == []
    assert all("DES-CBC3" in name for name in accepted["tls_1_0_cipher_suites"]), accepted  # 3DES: RSA and ECDHE
    for key, version in VERSIONS.items():
        probe = probes[version.name]
        assert (probe["outcome"] == "accepted") is bool(accepted[key]), (key, probe)
    assert "DES-CBC3-SHA" in probes["TLSv1"]["detail"]  # seen by the raw ClientHello: OpenSSL 3 has no 3DES
