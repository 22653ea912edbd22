"""Peer DRIMboxes of a campaign: several peer Source simulators sharing one Orthanc (registry name ``peers``).

Started only when the SUT plays the Conso role (a Source-only DUT never calls a peer). Two peers by
default, in other registries than the DUT's:

* :data:`WHITELISTED_PEER` ``db7.350.mesimagesmedicales.fr`` — meant to be listed in the whitelist;
* :data:`UNLISTED_PEER` ``db2.351.mesimagesmedicales.fr`` — meant to be absent from it (a Conso must
  never contact it, whatever a KOS says). It also answers for :data:`LOOKALIKE_HOSTS`, names that look like
  the listed peer's in its registry domain (none listed): a Conso must never contact them either.

The whitelist and the DMP content (KOS pointing at these peers) are wired by the whitelist and DMP
simulators; this module only serves images. Each peer has its own address: the first at
``runtime.simulator_address("peers")``, the next ones at ``[simulators] peers2``, ``peers3``… when an
external SUT declares them, else on the same host with a free port. With the embedded reference the
URLs are port-less (``https://db7.350.mesimagesmedicales.fr/dicom-web-rs``) and the DUT resolves the
FQDNs through :meth:`PeerGroup.hosts`; for an external DUT the port is written in the URLs unless 443.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.peer_source import PeerSource
from simulators.procutil import free_port

__all__ = ["WHITELISTED_PEER", "UNLISTED_PEER", "LOOKALIKE_HOSTS", "PeerSpec", "DEFAULT_PEERS", "PeerGroup",
           "start_for_campaign"]

WHITELISTED_PEER = "db7.350.mesimagesmedicales.fr"
UNLISTED_PEER = "db2.351.mesimagesmedicales.fr"

#: Look-alikes of the listed peer in its registry domain (``*.350.mesimagesmedicales.fr``), none of them listed:
#: case -> (authority written in the RetrieveURL, host name a client then connects to). Case and a final dot
#: on the listed name itself are the same host (DNS): contacting them is allowed, so they are not here.
LOOKALIKE_HOSTS: dict[str, tuple[str, str]] = {
    "suffixe": ("db70.350.mesimagesmedicales.fr", "db70.350.mesimagesmedicales.fr"),
    "préfixe": ("xdb7.350.mesimagesmedicales.fr", "xdb7.350.mesimagesmedicales.fr"),
    # the listed name and a port before "@": the host is what follows (RFC 3986 userinfo)
    "port en plus": ("db7.350.mesimagesmedicales.fr:443@db71.350.mesimagesmedicales.fr",
                     "db71.350.mesimagesmedicales.fr"),
    "point final": ("db72.350.mesimagesmedicales.fr.", "db72.350.mesimagesmedicales.fr."),
    # A-label of "ԁb7.350.mesimagesmedicales.fr" (U+0501 CYRILLIC SMALL LETTER KOMI DE for the "d")
    "confusable Unicode": ("xn--b7-32c.350.mesimagesmedicales.fr", "xn--b7-32c.350.mesimagesmedicales.fr"),
}


@dataclass(frozen=True)
class PeerSpec:
    fqdn: str
    whitelisted: bool  # the intent: whether the campaign's whitelist should list it
    structure_id: str
    organisation: str
    aliases: tuple[str, ...] = ()  # other names it answers to (certificate SANs, hosts map)


DEFAULT_PEERS = (
    PeerSpec(WHITELISTED_PEER, True, "300000009990350", "DRIMCHECK CENTRE PAIR 350"),
    PeerSpec(UNLISTED_PEER, False, "300000009990351", "DRIMCHECK CENTRE HORS LISTE 351",
             tuple(dict.fromkeys(host for _, host in LOOKALIKE_HOSTS.values()))),
)


class PeerGroup:
    """The running peers, by FQDN, and the Orthanc that holds their images (stopped with them)."""

    def __init__(self, orthanc: Any, *, own_orthanc: bool = True) -> None:
        self.orthanc = orthanc
        self._own_orthanc = own_orthanc
        self.peers: dict[str, PeerSource] = {}
        self.specs: dict[str, PeerSpec] = {}

    def add(self, spec: PeerSpec, peer: PeerSource) -> PeerSource:
        self.peers[spec.fqdn] = peer
        self.specs[spec.fqdn] = spec
        return peer

    def __getitem__(self, fqdn: str) -> PeerSource:
        return self.peers[fqdn]

    @property
    def whitelisted(self) -> list[PeerSource]:
        """Peers the whitelist of the campaign is meant to list."""
        return [p for f, p in self.peers.items() if self.specs[f].whitelisted]

    @property
    def unlisted(self) -> list[PeerSource]:
        """Peers the whitelist is meant to leave out."""
        return [p for f, p in self.peers.items() if not self.specs[f].whitelisted]

    def hosts(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for peer in self.peers.values():
            out.update(peer.hosts())
        return out

    def dut_settings(self) -> dict[str, Any]:
        return {"peers": [{**p.dut_settings(), "whitelisted": self.specs[f].whitelisted}
                          for f, p in self.peers.items()]}

    def requests(self) -> list[dict[str, Any]]:
        """Every peer's requests, in arrival order."""
        return sorted((e for p in self.peers.values() for e in p.requests), key=lambda e: e["t"])

    def clear_requests(self) -> None:
        for p in self.peers.values():
            p.clear_requests()

    def stop(self) -> None:
        for peer in self.peers.values():
            try:
                peer.stop()
            except Exception:  # noqa: BLE001 - stopping is best effort
                pass
        if self._own_orthanc:
            self.orthanc.stop(graceful=False)


def start_for_campaign(runtime: Any) -> PeerGroup | None:
    """Start the default peers (see the module docstring); None when the SUT has no Conso role."""
    from simulators.pacs import Orthanc, OrthancConfig, OrthancError

    if "conso" not in runtime.sut.roles:
        return None
    orthanc = Orthanc(OrthancConfig(aet="DRIMCHECK_PEERS", name="DRIMCHECK-PEERS"), runtime.workdir / "peers-pacs")
    try:
        orthanc.start()
    except OrthancError as exc:
        raise RuntimeError(f"Orthanc of the peer DRIMboxes: {exc.message}") from None
    group = PeerGroup(orthanc)
    psc = runtime.sims.get("psc")
    try:
        first = runtime.simulator_address("peers")
        for index, spec in enumerate(DEFAULT_PEERS):
            declared = runtime.sut.simulator_address(f"peers{index + 1}") if index else first
            host = declared.host if declared else first.host
            port = declared.port if declared and declared.port else free_port(host)
            public_port = None if runtime.sut.embedded or port == 443 else port
            peer = PeerSource(runtime.pki, orthanc, fqdn=spec.fqdn, psc=psc, host=host, port=port,
                              public_port=public_port, structure_id=spec.structure_id,
                              organisation=spec.organisation, aliases=spec.aliases)
            group.add(spec, peer.start())
    except BaseException:
        group.stop()
        raise
    return group
