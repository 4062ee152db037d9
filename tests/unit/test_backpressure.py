"""The gate between kopf's watch streams and its handlers (controller/backpressure.py): every
item in order and intact, at most `limit` object events in flight, the stream read ahead
meanwhile, its failure raised in place; and kopf's shape where the gate hooks in."""

import asyncio
import inspect
import re

import kopf
import pytest
from kopf._cogs.aiokits import aiotime
from kopf._cogs.clients import watching
from kopf._cogs.configs import configuration
from kopf._core.reactor import queueing
from wfclock.controller import backpressure
from wfclock.controller.backpressure import BATCH, KEEP_PARSED, Backlog, Gate, gated


def event(n: int) -> dict:
    body = {"metadata": {"name": f"s{n}", "uid": f"u{n}", "labels": {"n": str(n)}}}
    return {"type": "MODIFIED", "object": {**body, "spec": {"cron": "0 * * * *", "n": n}}}


async def source(items, read: list, fail: Exception | None = None):
    for item in items:
        read.append(item)
        yield item
        await asyncio.sleep(0)
    if fail is not None:
        raise fail


async def drain_like_kopf(stream, gate: Gate, work_seconds=0.001):
    """kopf's watcher and workers, reduced: each object event is processed in a task of its
    own, which frees its slot when done."""
    seen, most, tasks = [], 0, []

    async def process(item):
        nonlocal most
        most = max(most, len(gate.in_flight))
        await asyncio.sleep(work_seconds)
        gate.release(item)

    async for item in stream:
        seen.append(item)
        if backpressure._is_object_event(item):
            tasks.append(asyncio.create_task(process(item)))
    await asyncio.gather(*tasks)
    return seen, most


def test_every_item_arrives_in_order_and_intact_with_at_most_the_limit_in_flight():
    items = [event(n) for n in range(500)]
    items.insert(250, watching.Bookmark.LISTED)
    items.insert(300, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    gate = Gate(limit=4, stream="workflowschedules")

    seen, most = asyncio.run(drain_like_kopf(gated(source(items, []), gate), gate))

    assert seen == items  # the waiting ones were compressed: they come back equal
    assert most == 4
    assert gate.peak == 4 and not gate.in_flight


def test_the_backlog_gives_back_every_item_in_order_packing_object_events_in_lists():
    items = [event(n) for n in range(KEEP_PARSED + 5 * BATCH + 7)]
    items.insert(KEEP_PARSED + BATCH + 3, watching.Bookmark.LISTED)  # within a list being packed
    backlog = Backlog()
    taken = []
    for n, item in enumerate(items):
        backlog.put(item)
        if n % 100 == 99:  # taken while more arrive
            taken.append(backlog.take())
    packed = [entry for entry in backlog._entries if isinstance(entry, bytes)]
    assert len(packed) >= 4  # not one compressed entry per event
    assert len(backlog) == len(items) - len(taken)
    while backlog:
        taken.append(backlog.take())
    assert taken == items
    with pytest.raises(IndexError):
        backlog.take()


def test_the_stream_is_read_ahead_while_every_slot_is_taken():
    items = [event(n) for n in range(KEEP_PARSED * 3)]
    read: list = []
    gate = Gate(limit=1, stream="workflowschedules")

    async def first_only():
        stream = gated(source(items, read), gate)
        first = await anext(stream)  # takes the one slot, never released
        for _ in range(len(items) * 10):  # event-loop turns: plenty to read every item
            await asyncio.sleep(0)
        waiting = gate.waiting
        await stream.aclose()
        return first, waiting

    first, waiting = asyncio.run(first_only())
    assert first == items[0]
    assert len(read) == len(items)  # the whole stream was read, not stalled behind the slot
    assert waiting == len(items) - 1


def test_a_failure_of_the_stream_is_raised_after_the_items_before_it():
    items = [event(n) for n in range(10)]
    gate = Gate(limit=2, stream="workflowschedules")

    async def run():
        seen = []
        with pytest.raises(RuntimeError, match="410 Gone"):
            async for item in gated(source(items, [], RuntimeError("410 Gone")), gate):
                seen.append(item)
                gate.release(item)
        return seen

    assert asyncio.run(run()) == items


def test_closing_the_gated_stream_closes_the_stream_it_reads():
    closed = []

    async def endless():
        try:
            n = 0
            while True:
                n += 1
                yield event(n)
                await asyncio.sleep(0)
        finally:
            closed.append(True)

    async def run():
        gate = Gate(limit=8, stream="jobs")
        stream = gated(endless(), gate)
        await anext(stream)
        await stream.aclose()

    asyncio.run(run())
    assert closed == [True]


def test_install_wraps_kopfs_watcher_watch_and_sleep_and_uninstall_puts_them_back():
    # An operator started earlier in this process (the cluster tests) installed it already.
    try:
        backpressure.install(16)
        assert queueing.watcher is backpressure._watcher
        assert watching.infinite_watch is backpressure._infinite_watch
        assert aiotime.sleep is backpressure._sleep
    finally:
        backpressure.uninstall()
    kopf_own = (queueing.watcher, watching.infinite_watch, aiotime.sleep)
    assert [f.__module__ for f in kopf_own] == [
        "kopf._core.reactor.queueing",
        "kopf._cogs.clients.watching",
        "kopf._cogs.aiokits.aiotime",
    ]


def test_a_bound_is_refused_when_kopf_index_handlers_are_registered(monkeypatch):
    registry = kopf.OperatorRegistry()

    @kopf.index("wfclock.dev", "v1alpha1", "workflowschedules", registry=registry)
    def by_name(name, **_):
        return name

    monkeypatch.setattr(kopf, "get_default_registry", lambda: registry)
    try:
        with pytest.raises(ValueError, match="WFCLOCK_EVENTS_IN_FLIGHT.*set it to 0"):
            backpressure.install(8)
        assert queueing.watcher is backpressure._kopf_watcher  # refused: nothing changed
        backpressure.install(0)
    finally:
        backpressure.uninstall()


def test_objects_kopf_sleeps_on_do_not_hold_up_the_others(monkeypatch):
    # kopf's own watcher and workers; a and b sleep on their first event as a handler's retry
    # does (a minute, woken early by a newer event of the same object), with two slots.
    def ev(uid, version):
        meta = {"uid": uid, "name": uid, "resourceVersion": str(version)}
        return {"type": "MODIFIED", "object": {"metadata": meta}}

    async def watch(**_):
        for item in [ev("a", 1), ev("b", 1), ev("a", 2), ev("b", 2), ev("c", 1)]:
            yield item
        await asyncio.Event().wait()

    async def run():
        done = []

        async def processor(*, raw_event, stream_pressure=None, **_):
            meta = raw_event["object"]["metadata"]
            if meta["resourceVersion"] == "1" and meta["uid"] != "c":
                await aiotime.sleep(60, wakeup=stream_pressure)
            done.append((meta["uid"], meta["resourceVersion"]))

        watcher = asyncio.create_task(
            queueing.watcher(
                settings=configuration.OperatorSettings(),
                resource=type("Resource", (), {"plural": "workflowschedules"})(),
                namespace=None,
                processor=processor,
            )
        )
        try:
            for _ in range(300):  # up to 30 s, against the sleeps' 60 s
                if len(done) == 5:
                    break
                await asyncio.sleep(0.1)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return done

    monkeypatch.setattr(backpressure, "_kopf_infinite_watch", watch)
    try:
        backpressure.install(2)
        done = asyncio.run(run())
    finally:
        backpressure.uninstall()
    assert sorted(done) == [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("c", "1")]
    assert done.index(("a", "1")) < done.index(("a", "2"))  # each object's events in order


def test_kopf_still_has_the_shape_the_gate_hooks_into():
    # kopf is pinned; an upgrade that moves these makes the gate silently do nothing.
    watcher = inspect.signature(backpressure._kopf_watcher).parameters
    assert {"processor", "resource", "namespace"} <= set(watcher)
    watcher_source = inspect.getsource(backpressure._kopf_watcher)
    assert "watching.infinite_watch(" in watcher_source  # looked up at call time
    assert re.search(r"processor\(\s*raw_event=raw_event", inspect.getsource(queueing.worker))
    for sleeper in ("processing", "application", "throttlers"):  # kopf's sleeps on an event
        module = __import__(
            f"kopf._core.{'reactor' if sleeper == 'processing' else 'actions'}.{sleeper}",
            fromlist=["_"],
        )
        assert "aiotime.sleep(" in inspect.getsource(module)
    for caller in ("orchestration", "observation"):
        module = __import__(f"kopf._core.reactor.{caller}", fromlist=["_"])
        assert "queueing.watcher(" in inspect.getsource(module)


def test_a_stream_gauges_follow_its_gate_and_a_new_gate_after_it_ended():
    """The gauges of a stream are looked up once per gate: when its watch stream ends they are
    removed, and the next gate of the same stream exports its own figures again."""
    from prometheus_client import REGISTRY
    from wfclock.controller.metrics import observe_gate

    labels = {"stream": "unit-test-gauges"}
    first = Gate(4, labels["stream"])
    first.in_flight, first.peak, first.waiting = {1, 2}, 3, 5
    observe_gate(first)
    assert REGISTRY.get_sample_value("wfclock_watch_events_in_flight", labels) == 2
    assert REGISTRY.get_sample_value("wfclock_watch_events_waiting", labels) == 5
    first.closed = True
    observe_gate(first)
    assert REGISTRY.get_sample_value("wfclock_watch_events_in_flight", labels) is None
    second = Gate(4, labels["stream"])
    second.in_flight, second.peak = {7}, 1
    observe_gate(second)
    assert REGISTRY.get_sample_value("wfclock_watch_events_in_flight", labels) == 1
    assert REGISTRY.get_sample_value("wfclock_watch_events_in_flight_peak", labels) == 1
