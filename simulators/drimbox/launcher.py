"""Harness side of the reference DRIMbox: install it (certificates, configuration) and run it as a process.

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

from simulators.drimbox import mutants
from simulators.procutil import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]


class LaunchError(RuntimeError):
    """The reference DRIMbox did not start: one line, plus the tail of its log."""


class ReferenceDrimbox:
    def __init__(self, *, sut: Any, pki: Any, pacs: list[tuple[Any, Any]], workdir: Path, mutant: str | None = None):
        self.sut = sut
        self.pki = pki
        self.pacs = pacs  # [(config.Pacs, simulators.pacs.Orthanc)]
        self.workdir = workdir
        self.mutant = mutants.get(mutant)
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "drimbox.log"

    def _certificate(self, fqdn: str, role: str) -> Any:
        if role == "vi":
            return self.pki.market_ov(fqdn)
        fault = (self.mutant.deploy if self.mutant else {}).get("dbn_certificate")
        if fault == "market":
            return self.pki.market_ov(fqdn)
        if fault in ("san_mismatch", "expired"):
            return self.pki.negative(fault, fqdn)
        return self.pki.serv_ssl(fqdn)

    def config(self) -> dict[str, Any]:
        listeners = []
        for p, _ in self.pacs:
            for role, fqdn in (("db", p.db), ("vi", p.vi)):
                ep = self.sut.endpoint(fqdn)
                if ep.https:
                    cert = self._certificate(fqdn, role)
                    listeners.append({"fqdn": fqdn, "role": role, "scheme": "https", "host": ep.https.host,
                                      "port": ep.https.port, "cert": str(cert.chain_path), "key": str(cert.key_path)})
                if ep.http:
                    listeners.append({"fqdn": fqdn, "role": role, "scheme": "http", "host": ep.http.host,
                                      "port": ep.http.port})
        return {
            "name": self.sut.name,
            "registry": self.sut.registry,
            "mutant": self.mutant.id if self.mutant else None,
            "listeners": listeners,
            "pacs": [{"name": p.name, "db": p.db, "vi": p.vi, "aet": o.aet, "host": "127.0.0.1",
                      "dicom_port": o.dicom_port, "http_url": o.base_url, "username": o.auth[0],
                      "password": o.auth[1]} for p, o in self.pacs],
            "ready_file": str(self.workdir / "drimbox.ready"),
        }

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
