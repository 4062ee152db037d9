"""A fire due under a registration that then changed (an edit of the cron or the zone, a switch
to one-time, a pause, a delete) before its Job delivered it still ends in the ledger: launched
once, or skipped with the reason the change gives, never absent (issue 13's soak found such fires
lost). Against a real Postgres, with a fake of the Kube surface."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.controller import accounting, owed, reconciler
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

from ..support import reconcile

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EVERY_FIVE = {"type": "recurring", "cron": "*/5 * * * *", "timezone": "UTC"}
SLOW_FIRE = NOW - timedelta(minutes=5)  # 11:55: its pod is slow, it has not delivered yet
CHANGED_AT = NOW - timedelta(minutes=3)  # 11:57, two minutes after that fire


@pytest.fixture
def ctx(engine, database_url):
    return reconcile.context(engine, database_url, NOW)


def apply(ctx, uid, trigger, generation=1, **spec):
    return reconcile.apply(ctx, uid, trigger, generation, created="2026-11-25T11:30:00Z", **spec)


def job_fire(ctx, uid, at, cron="*/5 * * * *", zone="UTC"):
    """What a fire's pod does: one launcher call with the registration its Job was made for."""
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        conn.autocommit = True
        request = ClockFire(uuid.UUID(uid), at, "nightly-x", Registration(cron, zone))
        return launch(conn, request, now=ctx.now())


CHANGES = {
    "cron edit": lambda ctx, uid: apply(
        ctx, uid, {**EVERY_FIVE, "cron": "*/10 * * * *"}, generation=2
    ),
    "zone edit": lambda ctx, uid: apply(
        ctx, uid, {**EVERY_FIVE, "timezone": "Europe/Paris"}, generation=2
    ),
    "switch to one-time": lambda ctx, uid: apply(
        ctx, uid, {"type": "schedule", "runAt": (NOW + timedelta(hours=1)).isoformat()}, 2
    ),
    "pause": lambda ctx, uid: apply(ctx, uid, EVERY_FIVE, generation=2, paused=True),
    # Every minute is below the operator's 5-minute minimum: the schedule becomes invalid and
    # its state row disabled, with fires of the registration before the edit still owed.
    "edit making it invalid": lambda ctx, uid: apply(
        ctx, uid, {**EVERY_FIVE, "cron": "* * * * *"}, generation=2
    ),
    "delete": lambda ctx, uid: reconciler.delete(
        ctx, {"name": "nightly", "namespace": "acme", "uid": uid}
    ),
}
REASONS = {
    "cron edit": "superseded",
    "zone edit": "superseded",
    "switch to one-time": "superseded",
    "pause": "paused",
    "edit making it invalid": "disabled",
    "delete": "deleted",
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_fire_not_delivered_before_a_change_is_recorded_with_the_changes_reason(ctx, change):
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    for at in (NOW - timedelta(minutes=15), NOW - timedelta(minutes=10)):  # delivered in time
        ctx.clock = lambda at=at: at + timedelta(seconds=2)
        assert job_fire(ctx, uid, at).outcome == "launched"
    ctx.clock = lambda: CHANGED_AT
    CHANGES[change](ctx, uid)
    ctx.clock = lambda: NOW + timedelta(minutes=10)
    accounting.sweep(ctx, now=ctx.now())
    accounting.sweep(ctx, now=ctx.now() + timedelta(minutes=1))
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert SLOW_FIRE in fires, f"the fire of 11:55 was lost after the {change}"
    record = fires[SLOW_FIRE]
    assert record["outcome"] == "skipped", record
    assert record["reason"].startswith(REASONS[change]), record["reason"]
    # Its Job, delivering at last, meets the record: no run, whatever the order.
    assert job_fire(ctx, uid, SLOW_FIRE).outcome == "duplicate"
    ran = [
        r["payload"]["scheduledFor"]
        for r in store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
    ]
    assert "2026-11-25T11:55:00Z" not in ran
    assert sorted(ran)[:2] == ["2026-11-25T11:45:00Z", "2026-11-25T11:50:00Z"]


@pytest.mark.parametrize("change", ["cron edit", "pause", "edit making it invalid", "delete"])
def test_a_late_job_that_wins_the_race_with_the_change_is_the_only_record(ctx, change):
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    ctx.clock = lambda: CHANGED_AT - timedelta(seconds=1)
    assert job_fire(ctx, uid, SLOW_FIRE).outcome == "launched"  # just before the change
    ctx.clock = lambda: CHANGED_AT
    CHANGES[change](ctx, uid)
    ctx.clock = lambda: NOW + timedelta(minutes=10)
    accounting.sweep(ctx, now=ctx.now())
    (record,) = [
        f for f in store.list_fires(ctx.engine, uuid.UUID(uid)) if f["scheduled_for"] == SLOW_FIRE
    ]
    assert record["outcome"] == "launched"
    ran = [
        r["payload"]["scheduledFor"]
        for r in store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
    ]
    assert ran.count("2026-11-25T11:55:00Z") == 1


def published(at: datetime) -> dict:
    """The metadata of an edit the API server recorded at `at` (managedFields, to the second)."""
    entry = {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}
    return {"managedFields": [{**entry, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}]}


HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
SAME_FIRE_EDITS = {
    # 12:00 is a fire of both crons.
    "cron edit": (EVERY_FIVE, {**EVERY_FIVE, "cron": "*/10 * * * *"}),
    # Europe/London is UTC in November: the same instants, another zone.
    "zone edit": (HOURLY, {**HOURLY, "timezone": "Europe/London"}),
}


@pytest.mark.parametrize("edit", list(SAME_FIRE_EDITS))
def test_a_fire_the_new_trigger_owes_survives_the_old_cronjobs_job_delivering_it(ctx, edit):
    """An edit published just before a fire and reconciled just after it: the CronJob
    controller made that fire's Job from the CronJob as it was (the old cron or zone in its
    environment). The fire is after the edit's publish time and a fire of the new trigger, so
    the new trigger owes it; the old Job's refusal must not spend its key."""
    before, after = SAME_FIRE_EDITS[edit]
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, before)
    ctx.clock = lambda: NOW + timedelta(seconds=3)  # reconciled 3 s after the fire
    apply(ctx, uid, after, generation=2, metadata=published(NOW - timedelta(seconds=2)))
    ctx.clock = lambda: NOW + timedelta(seconds=5)
    old = job_fire(ctx, uid, NOW, cron=before["cron"], zone=before["timezone"])
    assert old.outcome == "skipped" and "another cron" in old.reason, old
    ctx.clock = lambda: NOW + timedelta(minutes=2)
    accounting.sweep(ctx, now=ctx.now())
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert fires[NOW]["outcome"] == "launched", fires[NOW]
    ran = [
        r["payload"]["scheduledFor"]
        for r in store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
    ]
    assert ran == ["2026-11-25T12:00:00Z"]
    assert job_fire(ctx, uid, NOW, cron=after["cron"], zone=after["timezone"]).outcome == (
        "duplicate"
    )


def test_a_failure_while_recording_the_fires_owed_before_an_edit_loses_none(ctx, monkeypatch):
    """The database goes away while an edit's reconcile records the old trigger's owed fires
    (after the state row moved on): kopf retries the reconcile, and the retry must still record
    them; by then the state row holds the new trigger only."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    ctx.clock = lambda: CHANGED_AT
    calls = []

    def launch_once_away(conn, request, now):
        calls.append(request.scheduled_for)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return launch(conn, request, now=now)

    monkeypatch.setattr(owed, "launch", launch_once_away)
    edit = {**EVERY_FIVE, "cron": "*/10 * * * *"}
    with contextlib.suppress(psycopg.OperationalError):  # a reconcile that raises is retried
        apply(ctx, uid, edit, generation=2)
    apply(ctx, uid, edit, generation=2)  # the retry
    assert calls, "the owed fires were never delivered"
    ctx.clock = lambda: NOW + timedelta(minutes=10)
    accounting.sweep(ctx, now=ctx.now())
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    for at in (NOW - timedelta(minutes=10), SLOW_FIRE):  # 11:50 and 11:55: no Job delivered
        assert at in fires, f"the fire of {at:%H:%M} owed before the edit was lost"
        assert fires[at]["reason"].startswith("superseded"), fires[at]


def test_a_failure_while_recording_the_fires_owed_before_a_delete_loses_none(ctx, monkeypatch):
    """The same for a delete: the failure is retried with the delete (kopf keeps the finalizer
    until the handler succeeds), not logged and forgotten: a deleted schedule is never swept."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    ctx.clock = lambda: CHANGED_AT
    calls = []

    def launch_once_away(conn, request, now):
        calls.append(request.scheduled_for)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return launch(conn, request, now=now)

    monkeypatch.setattr(owed, "launch", launch_once_away)
    meta = {"name": "nightly", "namespace": "acme", "uid": uid}
    try:
        reconciler.delete(ctx, meta)
    except psycopg.OperationalError:
        reconciler.delete(ctx, meta)  # a handler that raises is retried by kopf
    ctx.clock = lambda: NOW + timedelta(minutes=10)
    accounting.sweep(ctx, now=ctx.now())
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    for at in (NOW - timedelta(minutes=10), SLOW_FIRE):
        assert at in fires, f"the fire of {at:%H:%M} owed before the delete was lost"
        assert fires[at]["reason"].startswith("deleted"), fires[at]


def test_a_pause_after_more_owed_fires_than_one_sweep_takes_records_them_all(ctx):
    """A five-minute schedule whose fires went unrecorded for a week and five hours (2076
    fires, more than the 2016 one sweep looks at) and was then paused: the sweeps record every
    one of them, the earliest included, not only the last 2016 (the rest passed over for good)."""
    uid = str(uuid.uuid4())
    start = NOW - timedelta(days=7, hours=5)
    ctx.clock = lambda: start
    reconcile.apply(ctx, uid, EVERY_FIVE, created=f"{start:%Y-%m-%dT%H:%M:%SZ}")
    ctx.clock = lambda: NOW
    apply(ctx, uid, EVERY_FIVE, generation=2, paused=True)
    for minute in range(3):
        accounting.sweep(ctx, now=NOW + timedelta(minutes=2 + minute))
    fires = {f["scheduled_for"] for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert start + timedelta(minutes=5) in fires, "the earliest owed fires were passed over"
    assert len(fires) == (7 * 24 + 5) * 12


def test_a_pause_landing_while_the_sweep_records_a_miss_leaves_that_fire_owed_not_lost(ctx):
    """Found by the soak (100 x 10): the sweep planned 11:50 as missed (a later fire superseded
    it, policy latest), the schedule was paused before it recorded the miss, so the record was
    refused (the row is no longer `scheduled`), yet the watermark moved past 11:50 and the paused
    schedule's sweep never looked at it again."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    for minutes_before in (30, 25, 20, 15):  # delivered in time; 11:50 and 11:55 are not
        at = NOW - timedelta(minutes=minutes_before)
        ctx.clock = lambda at=at: at + timedelta(seconds=2)
        assert job_fire(ctx, uid, at).outcome == "launched"
    ctx.clock = lambda: NOW
    asked = []

    def paused_meanwhile(*job):
        # The sweep asks whether the missed fire's Job still runs (its GET, or the sweep's one
        # list of the fire Jobs) just before it records the miss: the moment a pause applied
        # by someone else lands.
        if not asked:
            apply(ctx, uid, EVERY_FIVE, generation=2, paused=True)
        asked.append(job)
        return False

    ctx.kube.job_active = paused_meanwhile
    ctx.kube.active_fire_jobs = lambda namespaces: paused_meanwhile(namespaces) or set()
    accounting.sweep(ctx, now=NOW)
    assert asked, "the sweep planned no miss: the scenario did not happen"
    accounting.sweep(ctx, now=NOW + timedelta(minutes=2))
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    missed = NOW - timedelta(minutes=10)
    assert missed in fires, "the fire of 11:50 was lost: paused while the sweep recorded it"
    assert fires[missed]["outcome"] == "skipped", {
        str(k): (f["outcome"], f["reason"], f["source"]) for k, f in fires.items()
    }


def test_an_invalid_edit_records_the_fires_owed_before_it_at_the_edit(ctx):
    """Not left to the next sweep: the invalid edit's reconcile records them (disabled), and
    nothing after the edit is owed."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    ctx.clock = lambda: CHANGED_AT
    CHANGES["edit making it invalid"](ctx, uid)
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert sorted(fires) == [NOW - timedelta(minutes=m) for m in (30, 25, 20, 15, 10, 5)]
    assert {f["reason"] for f in fires.values()} == {"disabled"}
    assert store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid)) == []


def test_the_sweep_records_the_fires_a_disabled_schedule_owed_before_its_invalid_edit(
    ctx, monkeypatch
):
    """The recording at the invalid edit failed (or the operator died right after disabling the
    row): the row keeps its trigger, so the accounting sweep, which walks disabled schedules as
    it walks paused ones, records the fires owed before the edit (disabled)."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, EVERY_FIVE)
    ctx.clock = lambda: CHANGED_AT
    with monkeypatch.context() as patched:

        def away(*args, **kwargs):
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        patched.setattr(owed, "launch", away)
        with contextlib.suppress(psycopg.OperationalError):
            CHANGES["edit making it invalid"](ctx, uid)
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["status"] == "disabled"
    ctx.clock = lambda: NOW + timedelta(minutes=10)
    accounting.sweep(ctx, now=ctx.now())
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    for at in (NOW - timedelta(minutes=10), SLOW_FIRE):  # 11:50 and 11:55: no Job delivered
        assert at in fires, f"the fire of {at:%H:%M} owed before the invalid edit was lost"
        assert fires[at]["outcome"] == "skipped", fires[at]
        assert fires[at]["reason"].startswith("disabled"), fires[at]
    assert CHANGED_AT + timedelta(minutes=3) not in fires  # nothing owed after the edit
    assert job_fire(ctx, uid, SLOW_FIRE).outcome == "duplicate"


RUN_AT = NOW - timedelta(minutes=5)  # 11:55, a one-time fire whose pod is slow


def once(at: datetime) -> dict:
    return {"type": "schedule", "runAt": at.isoformat()}


def one_time_fire(ctx, uid, at):
    """What a one-time Job's pod does: one launcher call, no cron in its registration."""
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        conn.autocommit = True
        request = ClockFire(uuid.UUID(uid), at, "once-x", Registration(None, "UTC"))
        return launch(conn, request, now=ctx.now())


def test_a_one_time_fire_due_before_its_run_at_was_changed_is_recorded_not_lost(ctx):
    """runAt moved (to later) after the old instant passed but before its Job delivered: the
    registration deletes that Job, so only the operator can account the old fire; and the new
    runAt still fires, once."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, once(RUN_AT))
    ctx.clock = lambda: CHANGED_AT
    new_run_at = NOW + timedelta(minutes=30)
    apply(ctx, uid, once(new_run_at), generation=2)
    ctx.clock = lambda: NOW + timedelta(minutes=1)
    accounting.sweep(ctx, now=ctx.now())
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert RUN_AT in fires, "the one-time fire of 11:55 was lost when its runAt moved"
    assert fires[RUN_AT]["outcome"] == "skipped"
    assert fires[RUN_AT]["reason"].startswith("superseded: the schedule now runs at")
    assert one_time_fire(ctx, uid, RUN_AT).outcome == "duplicate"  # its Job, at last
    ctx.clock = lambda: new_run_at + timedelta(seconds=3)
    assert one_time_fire(ctx, uid, new_run_at).outcome == "launched"
    assert one_time_fire(ctx, uid, new_run_at).outcome == "duplicate"
    ran = [
        r["payload"]["scheduledFor"]
        for r in store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
    ]
    assert ran == ["2026-11-25T12:30:00Z"]


def test_a_failure_while_recording_a_one_time_fire_owed_before_a_run_at_change_loses_none(
    ctx, monkeypatch
):
    """The recording runs in the state row's transaction: a failure undoes the runAt change
    too, and kopf's retry records the old fire with it."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, once(RUN_AT))
    ctx.clock = lambda: CHANGED_AT
    calls = []

    def launch_once_away(conn, request, now):
        calls.append(request.scheduled_for)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return launch(conn, request, now=now)

    monkeypatch.setattr(owed, "launch", launch_once_away)
    new_run_at = NOW + timedelta(minutes=30)
    with contextlib.suppress(psycopg.OperationalError):  # a reconcile that raises is retried
        apply(ctx, uid, once(new_run_at), generation=2)
    apply(ctx, uid, once(new_run_at), generation=2)  # the retry
    assert calls == [RUN_AT, RUN_AT]
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert fires[RUN_AT]["reason"].startswith("superseded: the schedule now runs at")
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["run_at"] == new_run_at


def test_a_one_time_schedule_that_fired_and_gets_a_new_run_at_fires_again_once(ctx):
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, once(RUN_AT))
    ctx.clock = lambda: RUN_AT + timedelta(seconds=2)
    assert one_time_fire(ctx, uid, RUN_AT).outcome == "launched"
    ctx.clock = lambda: CHANGED_AT
    new_run_at = NOW + timedelta(minutes=30)
    apply(ctx, uid, once(new_run_at), generation=2)
    ctx.clock = lambda: new_run_at + timedelta(seconds=3)
    assert one_time_fire(ctx, uid, new_run_at).outcome == "launched"
    assert one_time_fire(ctx, uid, new_run_at).outcome == "duplicate"
    accounting.sweep(ctx, now=ctx.now() + timedelta(minutes=2))
    ran = sorted(
        r["payload"]["scheduledFor"]
        for r in store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
    )
    assert ran == ["2026-11-25T11:55:00Z", "2026-11-25T12:30:00Z"]
    fires = {f["scheduled_for"]: f for f in store.list_fires(ctx.engine, uuid.UUID(uid))}
    assert fires[RUN_AT]["outcome"] == "launched"  # the first fire's record is left as it was
