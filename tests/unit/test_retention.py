"""When a completed one-time schedule that opted in is deleted (pure: spec and status in)."""

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import kopf
from wfclock.controller import handlers
from wfclock.controller.releases import ReleaseQueue
from wfclock.controller.retention import deletion_entry
from wfclock.core.model import API_GROUP, API_VERSION, PLURAL
from wfclock.core.retention import deletion_due

ONE_TIME = {"trigger": {"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}}
COMPLETED = {"phase": "Completed", "lastFireAt": "2026-12-01T09:00:01Z"}


def test_due_the_given_seconds_after_the_fire_launched():
    spec = {**ONE_TIME, "deleteAfterCompletionSeconds": 3600}
    assert deletion_due(spec, COMPLETED) == datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)
    assert deletion_due({**spec, "deleteAfterCompletionSeconds": 0}, COMPLETED) == datetime(
        2026, 12, 1, 9, 0, 1, tzinfo=UTC
    )


def test_never_without_opting_in_nor_before_completion():
    assert deletion_due(ONE_TIME, COMPLETED) is None  # off by default
    spec = {**ONE_TIME, "deleteAfterCompletionSeconds": 60}
    for phase in ("Scheduled", "Paused", "Missed", "Invalid", "Failed"):
        assert deletion_due(spec, {**COMPLETED, "phase": phase}) is None
    assert deletion_due(spec, {"phase": "Completed"}) is None  # no fire recorded yet
    recurring = {"trigger": {"type": "recurring"}, "deleteAfterCompletionSeconds": 60}
    assert deletion_due(recurring, COMPLETED) is None


# --- the deletion queue (controller.retention), fed by every event of a schedule ---

OPTED_IN = {**ONE_TIME, "deleteAfterCompletionSeconds": 60}
META = {"uid": "u-1", "namespace": "acme", "name": "once"}


def _queue_ctx():
    return SimpleNamespace(deletions=ReleaseQueue(lambda entry, now: None))  # not started


def _event(ctx, type_, meta=META, spec=OPTED_IN, status=COMPLETED):
    memo = kopf.Memo(ctx=ctx)
    asyncio.run(
        handlers.delete_after_completion(type=type_, meta=meta, spec=spec, status=status, memo=memo)
    )


def test_the_listing_after_a_restart_queues_a_completed_schedule_at_its_time():
    ctx = _queue_ctx()
    _event(ctx, None)  # kopf's initial listing: no event type
    assert len(ctx.deletions) == 1
    entry = deletion_entry(META, OPTED_IN, COMPLETED)
    assert (entry.uid, entry.namespace, entry.name) == ("u-1", "acme", "once")
    assert entry.run_at == datetime(2026, 12, 1, 9, 1, 1, tzinfo=UTC)


def test_an_edit_that_makes_it_not_due_and_its_deletion_take_it_out_of_the_queue():
    ctx = _queue_ctx()
    _event(ctx, "MODIFIED")
    _event(ctx, "MODIFIED", spec=ONE_TIME)  # deleteAfterCompletionSeconds removed
    assert len(ctx.deletions) == 0
    _event(ctx, "MODIFIED")
    _event(ctx, "MODIFIED", meta={**META, "deletionTimestamp": "2026-12-01T09:01:02Z"})
    assert len(ctx.deletions) == 0
    _event(ctx, "MODIFIED")
    _event(ctx, "DELETED")
    assert len(ctx.deletions) == 0
    _event(ctx, "MODIFIED", status={**COMPLETED, "phase": "Scheduled"})
    assert len(ctx.deletions) == 0


def test_kopf_keeps_no_body_per_schedule():
    """A daemon or timer on WorkflowSchedules makes kopf keep the last body of every schedule
    in memory (its `live_fresh_body`, about 20 KiB each): the operator registers none there."""
    resource = kopf.Resource(API_GROUP, API_VERSION, PLURAL)
    registry = kopf.get_default_registry()
    assert handlers.delete_after_completion  # the module's handlers are registered
    assert not registry._spawning.has_handlers(resource=resource)  # kopf's only way to ask


def test_kopf_hands_the_handler_the_events_of_opted_in_and_queued_schedules_only():
    """kopf's filter in front of `delete_after_completion`: an opted-in schedule's events pass,
    a schedule that never opted in does not cost a handler call, and one an edit opted out
    while it was queued still reaches the handler, which takes it out of the queue."""
    resource = kopf.Resource(API_GROUP, API_VERSION, PLURAL)
    registry = kopf.get_default_registry()
    [handler] = [
        h for h in registry._watching.get_all_handlers() if h.fn is handlers.delete_after_completion
    ]
    assert registry._watching.has_handlers(resource=resource)
    ctx = _queue_ctx()
    memo = kopf.Memo(ctx=ctx)
    assert handler.when(spec=OPTED_IN, meta=META, memo=memo)
    assert not handler.when(spec=ONE_TIME, meta=META, memo=memo)
    _event(ctx, "MODIFIED")  # queued while opted in
    assert handler.when(spec=ONE_TIME, meta=META, memo=memo)
    _event(ctx, "MODIFIED", spec=ONE_TIME)  # the edit that opts out reaches the handler
    assert len(ctx.deletions) == 0
    assert not handler.when(spec=ONE_TIME, meta=META, memo=memo)


def test_the_operators_cleanup_stops_its_queues_when_they_are_empty():
    """An empty queue has a length of 0, which reads as false: the cleanup stopped only the
    queues that held something, and left the others' threads running."""
    queues = [ReleaseQueue(lambda entry, now: None, workers=1) for _ in range(3)]
    for queue in queues:
        queue.start()
    ctx = SimpleNamespace(shifted=queues[0], deletions=queues[1], releases=queues[2])
    handlers.cleanup(memo=kopf.Memo(ctx=ctx))
    assert [queue._thread.is_alive() for queue in queues] == [False, False, False]
