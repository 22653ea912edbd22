"""The `[hooks]` commands of sut.toml as processes: bounded, each in its own process group, killed as a whole on
timeout or interruption, every run recorded as evidence. The campaign runtime decides which command runs when
(drimcheck.campaign.CampaignRuntime.run_hook); this module only runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from drimcheck.errors import INTERRUPTED_FR, HookFailed
from drimcheck.evidence import EvidenceStore
from drimcheck.services import InterruptState

HOOK_TIMEOUT_S = 120
#: After SIGINT/SIGTERM, after_campaign and the embedded DUT's stop must be done within this many seconds of
#: the signal (the whole run is bounded to 10 s by runner.InterruptGuard); a hook still running is killed.
INTERRUPT_CLEANUP_S = 6.0
CAMPAIGN_HOOKS = ("before_campaign", "after_campaign")  # their evidence goes to evidence/campaign/


class HookRunner:
    """Runs hook commands for one campaign; `interrupt()` gives the campaign's interruption state as it is now."""

    def __init__(self, evidence: EvidenceStore, interrupt: Callable[[], InterruptState]) -> None:
        self.evidence = evidence
        self._interrupt = interrupt
        self._running: set[subprocess.Popen[str]] = set()

    def run(self, name: str, command: str, env: dict[str, str], *, limit: float) -> str:
        """Run `command` (shell) for hook `name`, at most `limit` seconds (less once a signal came); its stdout.

        A non-zero exit or a timeout raises HookFailed naming the hook, with the tail of its output. Evidence of
        before_campaign/after_campaign goes to evidence/campaign/, that of the others to the current scenario.
        """
        scope = "campaign" if name in CAMPAIGN_HOOKS else None
        t0 = time.monotonic()
        proc = subprocess.Popen(command, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        self._running.add(proc)
        outcome = None
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    deadline = t0 + limit
                    first = self._interrupt().first_at
                    if first is not None:  # a signal came while this hook runs (cleanup)
                        deadline = min(deadline, first + INTERRUPT_CLEANUP_S)
                    if time.monotonic() >= deadline:
                        outcome = f"pas terminé en {time.monotonic() - t0:.0f} s, arrêté"
                        out, err = _kill_and_collect(proc)
                        break
        except BaseException:  # SIGINT/SIGTERM while the hook runs: the whole group goes
            out, err = _kill_and_collect(proc)
            self.evidence.write_text(f"hook-{name}", f"$ {command}\n{INTERRUPTED_FR}\n{out}\n{err}", scope=scope)
            raise
        finally:
            self._running.discard(proc)
        code = proc.returncode
        self.evidence.write_text(f"hook-{name}", f"$ {command}\nexit {code}\n{out}\n{err}", scope=scope)
        if outcome is None and code != 0:
            outcome = f"code {code}"
        if outcome is not None:
            tail = " | ".join(line.strip() for line in (err.strip() or out.strip()).splitlines()[-3:])[-300:]
            raise HookFailed(f"hook {name} en échec ({outcome}) : {tail or 'aucune sortie'}")
        return out

    def kill_all(self) -> None:
        """Last resort (runner watchdog): every hook still running, with its process group."""
        for proc in list(self._running):
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)  # the shell and whatever it started in its group
    except (ProcessLookupError, PermissionError):
        pass


def _kill_and_collect(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM to the hook's process group, SIGKILL 1 s later; its output so far."""
    _kill_group(proc, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=1)
    except BaseException:  # noqa: BLE001 - still running, or interrupted again
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=2)
        except BaseException:  # noqa: BLE001 - a grandchild in another group keeps the pipes: give up on them
            proc.kill()
            return "", ""
    _kill_group(proc)  # what the shell left behind in its group
    return out or "", err or ""
