"""The simulated PACS of one campaign: one Orthanc process per `[[pacs]]` of sut.toml, and the deterministic
synthetic studies stored in them (once per campaign each). Outages (stop, restart) are simulated here."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drimcheck.config import Pacs
from drimcheck.errors import HarnessError

if TYPE_CHECKING:  # imported when used: pydicom and Orthanc's client cost ~0.5 s, not wanted by `drimcheck --help`
    from simulators.pacs import Orthanc, SyntheticStudy


class PacsFleet:
    """Orthanc simulators by PACS name (`orthancs`, the dict CampaignRuntime.pacs shows) and their studies."""

    def __init__(self) -> None:
        self.orthancs: dict[str, Orthanc] = {}
        self._seeded: dict[tuple[str, str], SyntheticStudy] = {}

    def start(self, entries: Sequence[Pacs], workdir: Path, *, bind_host: str,
              calling_aets: tuple[str, ...]) -> tuple[Pacs, ...]:
        """Start one Orthanc per entry (each registered before it starts, so stop_all() stops a half-made fleet);
        the entries with the ports the simulators actually listen on."""
        from simulators.pacs import Orthanc, OrthancConfig, OrthancError

        for i, p in enumerate(entries):
            creds: dict[str, Any] = {"username": p.dicomweb_user} if p.dicomweb_user else {}  # sut.toml or kit
            self.orthancs[p.name] = Orthanc(OrthancConfig(aet=p.aet, http_port=p.http_port, dicom_port=p.dicom_port,
                                                          name=f"DRIMCHECK-{p.name}"[:30], password=p.dicomweb_password,
                                                          bind_host=bind_host, calling_aets=calling_aets, **creds),
                                            workdir / f"pacs-{i + 1}")
        errors: dict[str, OrthancError] = {}

        def start(name: str) -> None:
            try:
                self.orthancs[name].start()
            except OrthancError as exc:
                errors[name] = exc

        # Independent processes (own ports, own storage): started together, ~0.3-0.5 s each otherwise.
        threads = [threading.Thread(target=start, args=(p.name,), name=f"pacs-start-{p.name}") for p in entries[1:]]
        for thread in threads:
            thread.start()
        try:
            if entries:
                start(entries[0].name)
        finally:
            for thread in threads:
                thread.join()
        for p in entries:  # the first failing entry, in sut.toml order
            if p.name in errors:
                raise HarnessError(f"PACS simulé « {p.name} » : démarrage d'Orthanc impossible : "
                                   f"{errors[p.name].message}")
        return tuple(replace(p, dicom_port=self.orthancs[p.name].dicom_port, http_port=self.orthancs[p.name].http_port)
                     for p in entries)

    def orthanc(self, pacs: Pacs) -> Orthanc:
        return self.orthancs[pacs.name]

    def seed_study(self, pacs: Pacs, seed: str, **kw: Any) -> SyntheticStudy:
        """Store a deterministic synthetic study in a PACS simulator (once per campaign) and return it."""
        from simulators.pacs import make_study

        key = (pacs.name, seed)
        if key not in self._seeded:
            study = make_study(seed, **kw)
            try:
                self.orthanc(pacs).store(study.datasets())
            except Exception as exc:  # noqa: BLE001 - reported as a bench error (exit 3), not a traceback
                raise HarnessError(f"PACS simulé « {pacs.name} » : stockage de l'étude impossible : {exc}") from None
            self._seeded[key] = study
        return self._seeded[key]

    def seeded_studies(self) -> list[SyntheticStudy]:
        return list(self._seeded.values())

    def stop_pacs(self, pacs: Pacs) -> float:
        """Simulate a PACS outage (immediate kill); returns the monotonic time of the outage."""
        self.orthanc(pacs).stop(graceful=False)
        return time.monotonic()

    def start_pacs(self, pacs: Pacs) -> float:
        """Bring the PACS back (same ports, same data); returns the monotonic time it is ready again."""
        try:
            self.orthanc(pacs).restart()
        except Exception as exc:  # noqa: BLE001 - reported as a bench error (exit 3), not a traceback
            raise HarnessError(f"PACS simulé « {pacs.name} » : redémarrage impossible : {exc}") from None
        return time.monotonic()

    def stop_all(self) -> None:
        """Kill every Orthanc (best effort, also on the way out of an interrupted process); the fleet is empty."""
        for orthanc in list(self.orthancs.values()):
            try:
                orthanc.stop(graceful=False)
            except BaseException:  # noqa: BLE001 - best effort, the process dies with us anyway
                pass
        self.orthancs.clear()
