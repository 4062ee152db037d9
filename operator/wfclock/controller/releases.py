"""One-time releases: one thread and one heap for every pending one-time schedule.

A pending schedule costs a heap entry, not a task or timer of its own, so thousands of them wait
at the price of a few hundred bytes each. The heap is rebuilt from the resources on every start
(`@kopf.on.resume`), and the state row in Postgres decides at release time, so a restart never
releases twice or forgets a release.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("wfclock.releases")


@dataclass(order=True, frozen=True)
class Release:
    run_at: datetime
    uid: str = field(compare=False)
    namespace: str = field(compare=False)
    name: str = field(compare=False)
    job_name: str = field(compare=False)
    deadline_seconds: int = field(compare=False)


class ReleaseQueue:
    def __init__(
        self,
        release: Callable[[Release, datetime], None],
        clock=lambda: datetime.now(UTC),
        workers: int = 16,
    ):
        self._release = release
        # Many schedules due in the same second are released side by side, not one by one.
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="release")
        self._clock = clock
        self._heap: list[Release] = []
        self._current: dict[str, Release] = {}  # uid -> the entry that counts
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="one-time-releases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def schedule(self, entry: Release) -> None:
        with self._wake:
            if self._current.get(entry.uid) == entry:
                return
            self._current[entry.uid] = entry
            heapq.heappush(self._heap, entry)
            self._wake.notify()

    def forget(self, uid: str) -> None:
        with self._wake:
            self._current.pop(uid, None)

    def __len__(self) -> int:
        return len(self._current)

    def _next_due(self) -> Release | None:
        with self._wake:
            while not self._stopping:
                while self._heap and self._current.get(self._heap[0].uid) is not self._heap[0]:
                    heapq.heappop(self._heap)  # superseded or forgotten
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = (self._heap[0].run_at - self._clock()).total_seconds()
                if wait <= 0:
                    entry = heapq.heappop(self._heap)
                    del self._current[entry.uid]
                    return entry
                self._wake.wait(min(wait, 30))
            return None

    def _loop(self) -> None:
        while (entry := self._next_due()) is not None:
            self._pool.submit(self._release_one, entry)

    def _release_one(self, entry: Release) -> None:
        try:
            self._release(entry, self._clock())
        except Exception:  # noqa: BLE001 - one bad release must not stop the others
            log.exception("release of %s/%s failed; retrying in 5s", entry.namespace, entry.name)
            threading.Timer(5, self.schedule, args=(entry,)).start()
