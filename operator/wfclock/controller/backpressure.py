"""Back-pressure between kopf's watch streams and its handlers.

kopf reads a watch stream (and the first list) as fast as the API server sends it and queues
every event, whole body included, in a per-object queue with a worker task of its own, however
far behind the handlers are. A restart over N schedules therefore holds N parsed bodies and N
workers' handler state at once: about 100 KiB a schedule, over 1 GiB at 10,000 (docs/scale.md).

This bounds the events kopf has in flight per watch stream: at most `limit` events at a time are
handed to kopf (dispatched and not yet processed); the rest wait here, in arrival order,
compressed (`Backlog`). The stream itself is still read at once, so a long first list never
outlives its continue token and a watch never stalls, and no event is dropped or reordered.

An event stops counting once kopf sleeps on it (a handler's retry delay, the wait for its own
patch to come back, an error's throttle, a peer's deadline): kopf's sleeps end early when a
newer event of the same object arrives, and that event may be among the waiting ones, so a slot
held through a sleep would hold up every other object of the stream for the sleep's length.
What sleeps is a failing or waiting object, not a burst: the bound still holds for bursts.

Three of kopf's module attributes are wrapped for it (kopf is pinned; tests/unit/test_backpressure.py
fails if their shape changes): `queueing.watcher`, whose processor is counted (and
sieved: the events `idle_events` knows kopf would do nothing with are not processed),
`watching.infinite_watch`, whose events are gated, and `aiotime.sleep`, which frees the slot of
the event it sleeps on. With a limit of 0 and no sieve they pass through. kopf's index handlers wait in every
processor for every stream's whole first list, which the gate would hold back: `install` refuses
a limit when any is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import marshal
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import kopf
from kopf._cogs.aiokits import aiotime
from kopf._cogs.clients import watching
from kopf._core.reactor import queueing

log = logging.getLogger("wfclock.backpressure")

# Events waiting beyond this many are kept compressed (a short burst costs no CPU), this many
# to a packed list.
KEEP_PARSED = 64
BATCH = 64

_kopf_watcher = queueing.watcher
_kopf_infinite_watch = watching.infinite_watch
_kopf_sleep = aiotime.sleep
_limit = 0
# The gate of the watch stream kopf's watcher opens in this task.
_gate: contextvars.ContextVar[Gate | None] = contextvars.ContextVar("wfclock_gate", default=None)
# The event a worker task is processing, and its gate.
_processing: contextvars.ContextVar[tuple[Gate, dict] | None] = contextvars.ContextVar(
    "wfclock_processing", default=None
)


def _not_observed(gate: Gate) -> None:
    pass


_observe: Callable[[Gate], None] = _not_observed


def _no_sieve(resource: Any) -> None:
    return None


_sieve_for: Callable[[Any], Any] = _no_sieve


class Gate:
    """The events of one watch stream that kopf has in flight (`in_flight`), and how many wait for
    a slot (`waiting`); `acquire` waits for a free slot."""

    def __init__(self, limit: int, stream: str):
        self.limit = limit
        self.stream = stream
        self.in_flight: set[int] = set()
        self.waiting = 0
        self.peak = 0
        self.closed = False
        self._freed = asyncio.Event()

    async def acquire(self, event: dict) -> None:
        while len(self.in_flight) >= self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.in_flight.add(id(event))
        self.peak = max(self.peak, len(self.in_flight))
        _observe(self)

    def release(self, event: Any) -> None:
        if id(event) in self.in_flight:
            self.in_flight.discard(id(event))
            self._freed.set()
            _observe(self)


def install(
    limit: int,
    observe: Callable[[Gate], None] | None = None,
    sieve_for: Callable[[Any], Any] | None = None,
) -> None:
    """Bound each watch stream to `limit` events in flight (0: kopf's own behaviour).
    Takes effect for the watch streams started afterwards: call it before kopf starts them (a
    startup handler does). `observe` is called with a stream's gate whenever it changes.
    `sieve_for(resource)` gives a stream's sieve (`idle_events.Sieve`) or None: the events
    its `idle` names are not handed to kopf's processing."""
    global _limit, _observe, _sieve_for
    if limit and kopf.get_default_registry()._indexing.get_all_handlers():
        raise ValueError(
            "WFCLOCK_EVENTS_IN_FLIGHT: kopf's index handlers wait for every watch stream's whole "
            "first list, which a bound on the events in flight holds back; set it to 0 to use them"
        )
    _limit = limit
    _observe = observe or _not_observed
    _sieve_for = sieve_for or _no_sieve
    queueing.watcher = _watcher
    watching.infinite_watch = _infinite_watch
    aiotime.sleep = _sleep


def uninstall() -> None:
    global _limit, _observe, _sieve_for
    _limit, _observe, _sieve_for = 0, _not_observed, _no_sieve
    queueing.watcher = _kopf_watcher
    watching.infinite_watch = _kopf_infinite_watch
    aiotime.sleep = _kopf_sleep


def _stream_name(resource: Any, namespace: str | None) -> str:
    plural = getattr(resource, "plural", str(resource))
    return f"{plural}/{namespace}" if namespace else plural


async def _watcher(*, processor, resource, namespace, **kwargs) -> None:
    sieve = _sieve_for(resource)
    if not _limit and sieve is None:
        return await _kopf_watcher(
            processor=processor, resource=resource, namespace=namespace, **kwargs
        )
    gate = Gate(_limit, _stream_name(resource, namespace)) if _limit else None

    async def counted(*, raw_event, **rest):
        token = _processing.set((gate, raw_event)) if gate else None  # for _sleep
        try:
            if sieve is None:
                return await processor(raw_event=raw_event, **rest)
            if sieve.idle(raw_event):
                return None
            patched = await processor(raw_event=raw_event, **rest)
            sieve.processed(raw_event, patched)
            return patched
        finally:
            if gate:
                _processing.reset(token)
                gate.release(raw_event)

    # kopf's watcher opens its watch stream in this task, where the stream finds the gate.
    token = _gate.set(gate)
    try:
        return await _kopf_watcher(
            processor=counted, resource=resource, namespace=namespace, **kwargs
        )
    finally:
        _gate.reset(token)
        if gate:
            gate.closed = True
            _observe(gate)


async def _sleep(delays, wakeup: asyncio.Event | None = None):
    """kopf's sleep, which first frees the slot of the event being processed, if any."""
    processing = _processing.get()
    given = delays if isinstance(delays, Collection) else [delays]
    if processing is not None and min((d for d in given if d is not None), default=0) > 0:
        gate, event = processing
        gate.release(event)
    return await _kopf_sleep(delays, wakeup=wakeup)


def _is_object_event(item: Any) -> bool:
    """What kopf's watcher hands to a worker: not its own bookmarks, not the API's."""
    return isinstance(item, dict) and item.get("type") != "BOOKMARK"


async def _infinite_watch(**kwargs) -> AsyncIterator[Any]:
    gate = _gate.get()
    stream = _kopf_infinite_watch(**kwargs)
    if gate is not None:
        stream = gated(stream, gate)
    async with contextlib.aclosing(stream):
        async for item in stream:
            yield item


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Backlog:
    """Items waiting for the gate, in arrival order. Up to KEEP_PARSED are kept as they are;
    beyond that, object events are packed BATCH at a time into one compressed list, since
    zlib lets go of the interpreter lock on every call, and the event loop then waits for the
    handler threads to give it back (per event, that waiting doubled a restart's time)."""

    def __init__(self):
        self._entries: deque[Any] = deque()  # items, and packed lists of items (bytes)
        self._open: deque[Any] = deque()  # the newest object events, not packed yet
        self._unpacked: deque[Any] = deque()  # the oldest, from the last packed list taken
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, item: Any) -> None:
        self._count += 1
        if self._open or (self._count > KEEP_PARSED and _is_object_event(item)):
            if _is_object_event(item):
                self._open.append(item)
                if len(self._open) >= BATCH:
                    self._pack()
                return
            self._pack()
        self._entries.append(item)

    def take(self) -> Any:
        """The oldest item; IndexError when there is none."""
        if not self._unpacked:
            if self._entries:
                entry = self._entries.popleft()
                if isinstance(entry, bytes):
                    self._unpacked.extend(marshal.loads(zlib.decompress(entry)))
                else:
                    self._unpacked.append(entry)
            else:
                self._unpacked.append(self._open.popleft())
        self._count -= 1
        return self._unpacked.popleft()

    def _pack(self) -> None:
        if self._open:
            # marshal: the events are plain JSON data, packed and unpacked by this process
            # only; four times cheaper than JSON both ways.
            self._entries.append(zlib.compress(marshal.dumps(list(self._open)), 1))
            self._open.clear()


async def gated(stream: AsyncIterator[Any], gate: Gate) -> AsyncIterator[Any]:
    """`stream`'s items in order, each object event only once `gate` has a slot for it. The
    stream is read meanwhile by a task of its own, so it never stalls; its failure is raised
    here, in its place among the items."""
    waiting = Backlog()
    arrived = asyncio.Event()
    finished = False

    async def read() -> None:
        nonlocal finished
        try:
            async for item in stream:
                waiting.put(item)
                gate.waiting = len(waiting)
                _observe(gate)
                arrived.set()
        except Exception as exc:  # handed to the consumer, raised there
            waiting.put(_Failed(exc))
        finally:
            finished = True
            arrived.set()

    reader = asyncio.create_task(read(), name=f"wfclock watch reader {gate.stream}")
    try:
        while True:
            while not waiting:
                if finished:
                    if reader.cancelled():  # not by this generator: kopf's watch would end unseen
                        raise RuntimeError(
                            f"the watch stream's reader of {gate.stream} was cancelled"
                        )
                    return
                arrived.clear()
                await arrived.wait()
            item = waiting.take()
            gate.waiting = len(waiting)
            if isinstance(item, _Failed):
                raise item.error
            if _is_object_event(item):
                await gate.acquire(item)
            yield item
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(RuntimeError):
            await stream.aclose()
