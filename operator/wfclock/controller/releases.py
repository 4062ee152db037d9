"""One-time releases: one thread and one heap for every pending one-time schedule.

A pending schedule costs a heap entry, not a task or timer of its own, so thousands of them wait
at the price of a few hundred bytes each. The heap is rebuilt from the resources on every start
(`@kopf.on.resume`), and the state row in Postgres decides at release time, so a restart never
releases twice or forgets a release.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("wfclock.releases")
RETRY_SECONDS = 5


@dataclass(frozen=True)
class Release:
    """One pending release; two entries are the same only when every field is (a new Job name or
    deadline for the same instant replaces the old entry)."""

    run_at: datetime
    uid: str
    namespace: str
    name: str
    job_name: str
    deadline_seconds: int
    # Queued from the state table at start, before the schedule itself was read: released only
    # once the schedule is seen unchanged since that row (`onetime.preload`). Not part of the
    # entry's identity: the resume that finds the same entry leaves it queued.
    from_state_row: bool = field(default=False, compare=False)


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
        # (run_at, sequence, entry): ordered by time only, whatever the entries hold.
        self._heap: list[tuple[datetime, int, Release]] = []
        self._sequence = itertools.count()
        self._current: dict[str, Release] = {}  # uid -> the entry that counts
        # uid -> an entry being released or waiting for a retry; forget() drops it, so a retry
        # never brings back an entry forgotten (paused, edited, deleted) meanwhile.
        self._in_flight: dict[str, Release] = {}
        # uid -> how many of its entries were taken due and are being released now (a retry's
        # wait not included): `wait_idle` waits for them.
        self._releasing: dict[str, int] = {}
        self._local = threading.local()  # .uid: the schedule this worker thread releases
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
            self._in_flight.pop(entry.uid, None)
            if self._current.get(entry.uid) == entry:
                return
            self._current[entry.uid] = entry
            heapq.heappush(self._heap, (entry.run_at, next(self._sequence), entry))
            self._wake.notify()

    def forget(self, uid: str) -> None:
        with self._wake:
            self._current.pop(uid, None)
            self._in_flight.pop(uid, None)

    def _retry(self, entry: Release) -> None:
        with self._wake:
            if self._in_flight.get(entry.uid) is not entry:
                return  # forgotten or replaced while it waited
        self.schedule(entry)

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, uid: str) -> bool:
        with self._wake:
            return uid in self._current or uid in self._in_flight

    def _next_due(self) -> Release | None:
        with self._wake:
            while not self._stopping:
                while (
                    self._heap and self._current.get(self._heap[0][2].uid) is not self._heap[0][2]
                ):
                    heapq.heappop(self._heap)  # superseded or forgotten
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = (self._heap[0][0] - self._clock()).total_seconds()
                if wait <= 0:
                    _, _, entry = heapq.heappop(self._heap)
                    del self._current[entry.uid]
                    self._in_flight[entry.uid] = entry
                    self._releasing[entry.uid] = self._releasing.get(entry.uid, 0) + 1
                    return entry
                self._wake.wait(min(wait, 30))
            return None

    def _loop(self) -> None:
        while (entry := self._next_due()) is not None:
            self._pool.submit(self._release_one, entry)

    def wait_idle(self, uid: str, timeout: float) -> bool:
        """Waits until no entry of `uid` taken due before this call is being released; False
        when one still is after `timeout` seconds. A release taken after this call read its
        clock after the caller read its own."""
        # Not for its own release: a release that restores its schedule reconciles it.
        own = 1 if getattr(self._local, "uid", None) == uid else 0
        with self._wake:
            return self._wake.wait_for(lambda: self._releasing.get(uid, 0) <= own, timeout)

    def _release_one(self, entry: Release) -> None:
        self._local.uid = entry.uid
        try:
            self._release(entry, self._clock())
        except Exception:  # noqa: BLE001 - one bad release must not stop the others
            log.exception("release of %s/%s failed; retrying in 5s", entry.namespace, entry.name)
            threading.Timer(RETRY_SECONDS, self._retry, args=(entry,)).start()
            return
        finally:
            self._local.uid = None
            self._released(entry.uid)
        with self._wake:
            if self._in_flight.get(entry.uid) is entry:
                del self._in_flight[entry.uid]

    def _released(self, uid: str) -> None:
        with self._wake:
            left = self._releasing.pop(uid, 1) - 1
            if left:
                self._releasing[uid] = left
            self._wake.notify_all()
