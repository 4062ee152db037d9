"""Work the operator repeats on its own, whatever events it saw: the accounting sweep and the
resync of children. Each runs in a thread of its own every `interval` seconds plus up to 20%
jitter (so replicas and restarts do not fall into step), and a failure waits for the next turn."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

log = logging.getLogger("wfclock.operator")


class Periodic:
    def __init__(self, name: str, work: Callable[[], object], interval: float):
        self.name, self.work, self.interval = name, work, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval * (1 + random.random() / 5)):
            try:
                self.work()
            except Exception as exc:  # noqa: BLE001 - the database or API may be away
                log.warning("%s failed, trying again in %ss: %s", self.name, self.interval, exc)
