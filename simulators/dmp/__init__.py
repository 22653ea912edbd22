"""DMP simulator (XDS.b registry/repository over HTTPS + mTLS) started for every campaign."""

from __future__ import annotations

from typing import Any

from simulators.dmp.registry import Entry, Registry, RegistryError
from simulators.dmp.server import BASE_PATH, DMP_FQDN, DmpSimulator


class DmpHandle:
    """What the campaign keeps: the simulator, its URLs for the DUT, and the host mapping of its FQDN."""

    def __init__(self, sim: DmpSimulator, fqdn: str, trust_pem: str):
        self.sim = sim
        self.fqdn = fqdn
        self.trust_pem = trust_pem

    def dut_settings(self) -> dict[str, Any]:
        return {**self.sim.urls(self.fqdn), "fqdn": self.fqdn, "server_ca": self.trust_pem}

    def hosts(self) -> dict[str, str]:
        return {self.fqdn: f"{self.sim.host}:{self.sim.port}"}

    def stop(self) -> None:
        self.sim.stop()

    def __getattr__(self, name: str) -> Any:  # scenario controls: fail_next, wait_for, snapshot, registry...
        return getattr(self.sim, name)


def start_for_campaign(runtime: Any) -> DmpHandle | None:
    """Start the DMP on its [simulators] address, with a SERV_SSL server certificate of the run PKI."""
    if "source" not in runtime.sut.roles and "conso" not in runtime.sut.roles:
        return None
    from fixtures.pki import org_name

    addr = runtime.simulator_address("dmp")
    pki = runtime.pki
    names = [DMP_FQDN] + ([addr.host] if addr.host not in ("0.0.0.0", "::", DMP_FQDN) else [])
    server = pki.issue("dmp-server", subject=org_name(DMP_FQDN, "300000009990999", "DRIMCHECK DMP SIMULE"),
                       profile="serv_ssl", san=names)
    sim = DmpSimulator(runtime.evidence)
    sim.start(addr.host, addr.port, cert_chain=str(server.chain_path), key=str(server.key_path),
              client_ca=str(pki.igc_chain_pem))
    return DmpHandle(sim, DMP_FQDN, str(pki.igc_chain_pem))


__all__ = ["DmpSimulator", "DmpHandle", "Registry", "RegistryError", "Entry", "start_for_campaign", "BASE_PATH",
           "DMP_FQDN"]
