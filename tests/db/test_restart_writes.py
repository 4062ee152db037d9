"""An operator restart where nothing changed writes nothing: no child created or patched, no
state row updated, no Event, no status (issue 17, bench/restart_cost.py); what did change while
it was down is still written. Real Postgres, a fake of the Kube surface."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from wfclock.controller import onetime, reconciler
from wfclock.controller.context import Context
from wfclock.controller.handlers import changed_fields
from wfclock.controller.releases import ReleaseQueue
from wfclock.controller.resume import ResumeIndex
from wfclock.core.fires import fire_key_for
from wfclock.db import store
from wfclock.settings import Settings

from ..support.fake_kube import FakeKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"
DAILY = {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"}
ONCE = {"type": "schedule", "runAt": (NOW + timedelta(days=1)).isoformat()}
WRITES = {
    "create_or_patch_cronjob",
    "create_job_if_absent",
    "suspend_cronjob",
    "delete_cronjob",
    "delete_job",
    "patch_status",
}


@pytest.fixture
def ctx(engine, database_url):
    context = Context(
        Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: NOW
    )
    context.releases = ReleaseQueue(lambda entry, now: None)  # not started: nothing is released
    return context


def meta(uid: str, name: str, generation: int = 1) -> dict:
    return {
        "name": name,
        "namespace": "acme",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": "2026-11-25T11:59:00Z",
    }


def spec(trigger: dict) -> dict:
    return {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": trigger}


def row_versions(engine) -> dict:
    """Each state row's xmin: it changes with any update of the row, even to the same values."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT schedule_id, xmin::text FROM workflow_schedules"))
        return dict(rows.all())


def restart(ctx) -> None:
    """What a new operator process starts with: an empty queue and a fresh index."""
    ctx.releases = ReleaseQueue(lambda entry, now: None)
    ctx.resume = ResumeIndex(lambda: ctx.kube.child_digests([]))
    ctx.kube.calls.clear()
    ctx.kube.events.clear()


def test_a_restart_with_nothing_changed_writes_nothing(ctx):
    recurring, once = str(uuid.uuid4()), str(uuid.uuid4())
    statuses = {
        recurring: reconciler.reconcile(ctx, meta(recurring, "daily"), spec(DAILY), {}),
        once: reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {}),
    }
    before = row_versions(ctx.engine)
    restart(ctx)

    for uid, name, trigger in ((recurring, "daily", DAILY), (once, "once", ONCE)):
        status = reconciler.reconcile(
            ctx, meta(uid, name), spec(trigger), statuses[uid], resumed=True
        )
        assert changed_fields(statuses[uid], status) == {}  # the status is not written either

    assert WRITES.isdisjoint(ctx.kube.names()), ctx.kube.names()
    assert ctx.kube.events == []
    assert row_versions(ctx.engine) == before
    assert len(ctx.releases) == 1  # the one-time release is queued again, all the same
    assert ctx.kube.names().count("child_digests") == 1  # one list for all, not one each


def test_a_restart_over_a_missed_one_time_schedule_writes_nothing(ctx):
    """The row of a missed one-time schedule keeps why it failed; a restart neither clears
    that reason nor writes the row to keep it."""
    once = str(uuid.uuid4())
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {})
    row = store.get_schedule(ctx.engine, uuid.UUID(once))
    run_at = row["run_at"]
    key = fire_key_for(once, run_at)
    assert store.record_missed(ctx.engine, row, run_at, key, "missed: the operator was down")
    status = reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {})
    assert status["lastError"] == "missed: the operator was down"
    before = row_versions(ctx.engine)
    restart(ctx)

    again = reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), status, resumed=True)

    assert changed_fields(status, again) == {}
    assert row_versions(ctx.engine) == before
    assert WRITES.isdisjoint(ctx.kube.names()), ctx.kube.names()


def test_a_restart_over_an_ended_recurring_schedule_writes_and_lists_nothing(ctx):
    """A recurring schedule past its activeUntil has ended: its row says so and its CronJob
    is gone. A restart finds it so and leaves it (no row update, no list of its children);
    a CronJob that is back after all (restored from a backup while it was down) still goes."""
    ended = str(uuid.uuid4())
    reconciler.reconcile(ctx, meta(ended, "ended"), spec(DAILY), {})
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    bounded = {**DAILY, "activeUntil": (NOW - timedelta(days=1)).isoformat()}
    status = reconciler.reconcile(ctx, meta(ended, "ended", 2), spec(bounded), {})
    assert status["phase"] == "Ended" and not ctx.kube.cronjobs
    before = row_versions(ctx.engine)
    restart(ctx)

    again = reconciler.reconcile(ctx, meta(ended, "ended", 2), spec(bounded), status, resumed=True)

    assert changed_fields(status, again) == {}
    assert row_versions(ctx.engine) == before
    assert "owned" not in ctx.kube.names(), ctx.kube.names()
    assert WRITES.isdisjoint(ctx.kube.names()) and ctx.kube.events == []

    ctx.kube.cronjobs[key] = cronjob
    restart(ctx)
    reconciler.reconcile(ctx, meta(ended, "ended", 2), spec(bounded), status, resumed=True)
    assert ctx.kube.names().count("delete_cronjob") == 1 and not ctx.kube.cronjobs


def test_a_restart_writes_what_changed_while_it_was_down(ctx):
    deleted, edited, drifted = (str(uuid.uuid4()) for _ in range(3))
    for uid, name in ((deleted, "deleted"), (edited, "edited"), (drifted, "drifted")):
        reconciler.reconcile(ctx, meta(uid, name), spec(DAILY), {})
    once = str(uuid.uuid4())
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {})
    # While it was down: a CronJob and the one-time Job deleted by hand, a spec edited, and a
    # new launcher image configured (every CronJob it writes would differ).
    cronjobs, jobs = ctx.kube.cronjobs, ctx.kube.jobs
    del cronjobs[next(k for k in cronjobs if k[1].startswith("deleted"))]
    jobs.clear()
    restart(ctx)
    reconciler.reconcile(ctx, meta(deleted, "deleted"), spec(DAILY), {}, resumed=True)
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {}, resumed=True)
    hourly = {**DAILY, "cron": "0 * * * *"}
    reconciler.reconcile(ctx, meta(edited, "edited", 2), spec(hourly), {}, resumed=True)
    assert ctx.kube.names().count("create_or_patch_cronjob") == 2
    assert ctx.kube.names().count("create_job_if_absent") == 1
    assert len(jobs) == 1

    ctx.settings = Settings(database_url=ctx.settings.database_url, launcher_image="other:2")
    ctx.kube.calls.clear()
    reconciler.reconcile(ctx, meta(drifted, "drifted"), spec(DAILY), {}, resumed=True)
    assert ctx.kube.names().count("create_or_patch_cronjob") == 1
    patched = next(b for k, b in cronjobs.items() if k[1].startswith("drifted"))
    template = patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["image"] == "other:2"


def test_only_the_status_fields_that_differ_are_patched():
    current = {"phase": "Scheduled", "nextFires": ["a"], "lastError": None}
    assert changed_fields(current, {"phase": "Scheduled", "lastError": None}) == {}
    assert changed_fields(current, {"phase": "Paused", "nextFires": ["a"]}) == {"phase": "Paused"}
    assert changed_fields({}, {"lastFireAt": None}) == {}


def test_pending_releases_are_queued_from_the_state_table_before_any_resume(ctx):
    once, recurring = str(uuid.uuid4()), str(uuid.uuid4())
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {})
    reconciler.reconcile(ctx, meta(recurring, "daily"), spec(DAILY), {})
    restart(ctx)
    assert onetime.preload(ctx) == 1 and len(ctx.releases) == 1  # no schedule read yet
    # Its resume finds the same entry queued and leaves it.
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {}, resumed=True)
    assert len(ctx.releases) == 1


def test_a_release_queued_from_the_state_table_waits_for_a_schedule_edited_while_down(ctx):
    once = str(uuid.uuid4())
    reconciler.reconcile(ctx, meta(once, "once"), spec(ONCE), {})
    restart(ctx)
    onetime.preload(ctx)
    entry = ctx.releases._current[once]
    due = entry.run_at + timedelta(seconds=1)
    # Edited while the operator was down (generation 2, not registered yet): not released.
    ctx.kube.schedules[("acme", "once")] = {"metadata": {**meta(once, "once"), "generation": 2}}
    onetime.release(ctx, entry, due)
    assert "release_job" not in ctx.kube.names()
    # Unchanged since its state row: released.
    ctx.kube.schedules[("acme", "once")] = {"metadata": meta(once, "once")}
    onetime.release(ctx, entry, due)
    assert ctx.kube.names().count("release_job") == 1


def test_a_restart_with_nothing_changed_queues_the_next_shifted_fire_again(ctx):
    """The shifted fires after a daylight-saving gap (dstPolicy Auto: a fixed-time 02:30 in
    Berlin runs at 03:00 on the day 02:30 does not exist) are queued in this process only: a
    restart that writes nothing must still queue the next one, or it never runs."""
    ctx.clock = lambda: datetime(2027, 3, 27, 12, 0, tzinfo=UTC)  # the day before the gap
    ctx.shifted = ReleaseQueue(lambda entry, now: None)
    uid = str(uuid.uuid4())
    trigger = {"type": "recurring", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    status = reconciler.reconcile(ctx, meta(uid, "berlin"), spec(trigger), {})
    assert len(ctx.shifted) == 1
    restart(ctx)
    ctx.shifted = ReleaseQueue(lambda entry, now: None)
    again = reconciler.reconcile(ctx, meta(uid, "berlin"), spec(trigger), status, resumed=True)
    assert WRITES.isdisjoint(ctx.kube.names()), ctx.kube.names()  # still nothing written
    assert changed_fields(status, again) == {}
    assert len(ctx.shifted) == 1, "the shifted fire of 2027-03-28 03:00 is not queued"


def test_a_resume_past_a_one_time_deadline_derives_its_status_from_the_recorded_miss(ctx):
    """The operator down across a runAt, back after its deadline: the resume's own status says
    Missed, with the reason, whether or not the release queue (a thread of its own, not started
    here) recorded the miss first; kopf writes this status after the release's, so a resume
    that derived it from the row as it was before would leave Scheduled for good (seen in CI)."""
    once = str(uuid.uuid4())
    run_at = NOW + timedelta(minutes=1)
    trigger = {"type": "schedule", "runAt": run_at.isoformat()}
    first = reconciler.reconcile(
        ctx, meta(once, "once"), {**spec(trigger), "startingDeadlineSeconds": 15}, {}
    )
    assert first["phase"] == "Scheduled"
    restart(ctx)
    ctx.clock = lambda: run_at + timedelta(seconds=30)
    status = reconciler.reconcile(
        ctx,
        meta(once, "once"),
        {**spec(trigger), "startingDeadlineSeconds": 15},
        first,
        resumed=True,
    )
    assert status["phase"] == "Missed", status
    assert "beyond the 15s deadline" in status["lastError"]
    with ctx.engine.connect() as conn:
        outcome = conn.execute(
            text("SELECT outcome FROM workflow_schedule_fires WHERE schedule_id = :s"),
            {"s": once},
        ).scalar_one()
    assert outcome == "skipped"


def test_a_reconcile_past_a_one_time_deadline_leaves_the_fire_its_release_is_releasing(
    engine, database_url
):
    """The release queue took the one-time schedule's entry on time (14 s after runAt, a 15 s
    deadline) and is releasing its Job when a reconcile (a resume, or an edit of any field)
    comes 30 s after runAt. The reconcile recorded the miss (its Job still read suspended, so
    not active), the release then started the Job anyway, and the fire it delivered on time
    was a duplicate of a miss. It waits for the release under way, then finds the Job active."""
    import threading

    releasing, go_on = threading.Event(), threading.Event()

    class SlowRelease(FakeKube):
        def release_job(self, namespace: str, name: str) -> bool:
            releasing.set()
            go_on.wait(30)
            self.active_jobs.add((namespace, name))
            return super().release_job(namespace, name)

    run_at = NOW + timedelta(minutes=1)
    ctx = Context(
        Settings(database_url=database_url), engine, SlowRelease(engine), clock=lambda: NOW
    )
    ctx.releases = ReleaseQueue(
        lambda entry, now: onetime.release(ctx, entry, now),
        clock=lambda: run_at + timedelta(seconds=14),
    )
    once = str(uuid.uuid4())
    body = {
        **spec({"type": "schedule", "runAt": run_at.isoformat()}),
        "startingDeadlineSeconds": 15,
    }
    first = reconciler.reconcile(ctx, meta(once, "once"), body, {})
    ctx.releases.start()
    try:
        assert releasing.wait(30), "the release never started"
        ctx.clock = lambda: run_at + timedelta(seconds=30)
        threading.Timer(2, go_on.set).start()  # the Job's patch lands 2 s into the reconcile
        status = reconciler.reconcile(ctx, meta(once, "once", generation=2), body, first)
    finally:
        go_on.set()
        ctx.releases.stop()
    assert status["phase"] != "Missed", status
    with ctx.engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT outcome, reason FROM workflow_schedule_fires WHERE schedule_id = :s"),
            {"s": once},
        ).all()
    assert recorded == [], recorded
