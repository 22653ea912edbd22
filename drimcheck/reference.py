"""Orchestration of the reference DRIMbox (the embedded DUT): install it (certificates, configuration) and run it
as a process (`python -m simulators.drimbox --config FILE`).

Certificate mutants are deployment faults (the operator installed the wrong certificate), so they
are applied here; behaviour mutants are passed to the DRIMbox process by id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drimcheck.kit import runtime_files, settings_document
from drimcheck.services import SimulatorRuntime
from simulators.drimbox import mutants
from simulators.drimbox.settings import config_from_settings, enabled_functions
from simulators.procutil import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent


class LaunchError(RuntimeError):
    """The reference DRIMbox did not start: one line, plus the tail of its log."""


class ReferenceDrimbox:
    """The embedded DUT. `runtime`: the campaign's SUT, PKI, addresses and simulators (drimcheck.campaign)."""

    def __init__(self, runtime: SimulatorRuntime, *, mutant: str | None = None) -> None:
        if runtime.workdir is None:
            raise LaunchError("no work directory: the campaign is not started")
        self.runtime = runtime
        self.workdir: Path = runtime.workdir / "dut"
        self.mutant = mutants.get(mutant)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "drimbox.log"

    @property
    def deploy_faults(self) -> dict[str, Any]:
        return self.mutant.deploy if self.mutant else {}

    def _certificate(self, fqdn: str, role: str) -> Any:
        pki = self.runtime.pki
        if role == "vi":
            return self._vi_certificate(fqdn)
        fault = self.deploy_faults.get("dbn_certificate")
        if fault == "market":
            return pki.market_ov(fqdn)
        if fault in ("san_mismatch", "expired"):
            return pki.negative(fault, fqdn)
        return pki.serv_ssl(fqdn)

    def _vi_certificate(self, fqdn: str) -> Any:
        """viN: a market OV certificate, unless a deployment fault installs an IGC-Santé or an expired one."""
        from datetime import timedelta

        pki = self.runtime.pki
        fault = self.deploy_faults.get("vin_certificate")
        if fault == "igc":
            return pki.serv_ssl(fqdn)
        if fault == "expired":
            subject = pki.market_ov(fqdn).cert.subject
            return pki.issue(f"market_ov_expired:{fqdn}", subject=subject, profile="market_ov", issuer="market_ca",
                             san=[fqdn], not_before=pki.now - timedelta(days=398), not_after=pki.now - timedelta(days=2))
        return pki.market_ov(fqdn)

    def refresh_whitelist(self, timeout: float = 10.0) -> dict[str, Any]:
        """Built-in refresh trigger: the reference's loopback admin endpoint, answered once the list is applied."""
        import http.client

        admin = self.runtime.dut_address("admin")
        conn = http.client.HTTPConnection(admin.host, admin.port, timeout=timeout)
        try:
            conn.request("POST", "/whitelist/refresh", body=b"")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"admin endpoint answered HTTP {resp.status}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def kpi_text(self) -> str:
        """Built-in equivalent of `[hooks] kpi`: the reference's ModelStat KPI file ("" before the first call)."""
        try:
            return (self.workdir / "kpi" / "ModelStat.log").read_text(encoding="utf-8")
        except OSError:
            return ""

    def functions(self) -> list[str]:
        return enabled_functions(set(self.runtime.sut.roles))

    def config(self) -> dict[str, Any]:
        """The reference's configuration, translated from the same dut-settings document an external DUT
        gets from its kit (drimcheck/kit.py), then the mutant's deployment faults applied."""
        rt, pki = self.runtime, self.runtime.pki
        document = settings_document(rt, *runtime_files(rt))
        cfg = config_from_settings(document)
        for listener in cfg["listeners"]:
            if listener["scheme"] == "https":
                cert = self._certificate(listener["fqdn"], listener["role"])
                listener.update(cert=str(cert.chain_path), key=str(cert.key_path))
        if self.deploy_faults.get("client_trust") == "rogue":
            # deployment fault: a client truststore that also trusts a foreign hierarchy
            cfg["trust"]["client_extra"] = str(pki.rogue_trust_pem)
        cfg.update(mutant=self.mutant.id if self.mutant else None, workdir=str(self.workdir),
                   ready_file=str(self.workdir / "drimbox.ready"))
        return cfg

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.config()
        cfg_path = self.workdir / "drimbox.json"
        cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        os.chmod(cfg_path, 0o600)  # it holds the PACS password
        ready = Path(cfg["ready_file"])
        ready.unlink(missing_ok=True)
        env = {**os.environ, "TCP_NODELAY": "1", "PYTHONPATH": str(REPO_ROOT)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "simulators.drimbox", "--config", str(cfg_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT), preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise LaunchError(f"reference DRIMbox exited with code {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"reference DRIMbox not ready within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.02)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        self.process = None
