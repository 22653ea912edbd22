"""Status poller simulator: polls the DUT's HealthCheck at a fixed interval, like the Météo des DRIMbox.

It records every poll (send/receive times and the exchange) and decides nothing: the health checks
judge the recorded timeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from drimcheck.net import DutClient, Poll


class MeteoPoller:
    """Background poller; `polls` grows while it runs. Every request is bounded by the client timeout."""

    def __init__(self, client: DutClient, url: str, *, interval_s: float = 0.5, label: str = "meteo"):
        self.client = client
        self.url = url
        self.interval_s = interval_s
        self.label = label
        self.polls: list[Poll] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> Poll:
        n = len(self.polls) + 1
        sent = time.monotonic()
        ex = self.client.get(self.url, label=f"{self.label}-{n:03d}")
        poll = Poll(sent_at=sent, received_at=time.monotonic(), exchange=ex)
        with self._lock:
            self.polls.append(poll)
        return poll

    def poll(self, count: int) -> list[Poll]:
        """Poll `count` times at the fixed interval (blocking)."""
        out = []
        for i in range(count):
            started = time.monotonic()
            out.append(self.poll_once())
            if i < count - 1:
                time.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        return out

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="meteo-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.timeout + self.interval_s + 1)
            self._thread = None

    def snapshot(self) -> list[Poll]:
        with self._lock:
            return list(self.polls)

    def wait_for(self, predicate: Callable[[Poll], bool], *, since: float, deadline_s: float) -> Poll | None:
        """Wait (bounded) until a poll sent after `since` satisfies the predicate; None on timeout."""
        end = since + deadline_s
        seen = 0
        while True:
            polls = self.snapshot()
            for p in polls[seen:]:
                if p.sent_at >= since and predicate(p):
                    return p
                if p.sent_at > end:  # a poll sent after the deadline: nothing later can count
                    return None
            seen = len(polls)
            if time.monotonic() > end + self.client.timeout:
                return None
            time.sleep(0.05)
