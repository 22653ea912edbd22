"""The harness's own failures, shared by every layer (core): what a simulator or a step raises when the test bed,
not the DUT, is at fault, and the campaign's interruption by a signal.

Verdicts: a HarnessError makes the scenario ERROR (exit 3); CampaignInterrupted stops the campaign (runner)."""

from __future__ import annotations

import signal


class HarnessError(RuntimeError):
    """Something the harness needs is broken (simulator, PACS, configuration): verdict ERROR, exit 3."""


class DutUnreachable(HarnessError):
    """The DUT cannot be reached at all: nothing can be judged."""


class HookFailed(HarnessError):
    """A `[hooks]` command of sut.toml failed or timed out: named in the reports, never "DUT injoignable"."""


class CampaignInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the campaign stops, writes the reports of what ran and cleans up (runner.InterruptGuard)."""

    def __init__(self, signum: int = 2):
        super().__init__(signum)
        self.signum = signum


INTERRUPTED_FR = "campagne interrompue"


def signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name if signum else "signal"
    except ValueError:
        return f"signal {signum}"
