"""Every owed fire ends in the ledger: the accounting sweep launches a fire its Job did not
record while it is within its deadline, and records it as missed, with the reason, beyond it.
Against a real Postgres, with a fake of the Kube surface for the Jobs' state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from wfclock.controller import accounting, onetime
from wfclock.controller.context import Context
from wfclock.controller.releases import Release
from wfclock.core.fires import fire_key_for, utc_iso
from wfclock.core.names import SCHEDULE_UID_LABEL
from wfclock.core.status import status_for
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, RunNow, launch
from wfclock.settings import Settings

from ..conftest import make_state, one_time_state
from ..support.fake_kube import FakeKube

NOW = datetime(2026, 11, 25, 10, 7, tzinfo=UTC)
TEN, FIVE_PAST = (
    datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    datetime(2026, 11, 25, 10, 5, tzinfo=UTC),
)


@pytest.fixture
def ctx(engine, database_url):
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: NOW)


def every_five_minutes(add_schedule, **overrides):
    state = make_state(cron="*/5 * * * *", timezone="UTC", registered_name="nightly-x", **overrides)
    return add_schedule(state, effective_from=NOW - timedelta(minutes=8))  # 09:59


def job_fire(engine, schedule_id, at):
    with engine.raw_connection() as raw:
        conn = raw.driver_connection
        conn.autocommit = True
        request = ClockFire(
            schedule_id,
            at,
            f"nightly-x-{int(at.timestamp()) // 60}",
            Registration("*/5 * * * *", "UTC"),
        )
        return launch(conn, request, now=at + timedelta(seconds=2))


def ledger(engine, schedule_id):
    return {f["scheduled_for"]: f for f in store.list_fires(engine, schedule_id)}


def test_a_fire_lost_to_a_database_outage_is_launched_when_the_database_is_back(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule, missed_fires="catchUp")
    # 10:00 failed (its Job gave up while the database was away), 10:05 launched normally.
    assert job_fire(engine, state.schedule_id, FIVE_PAST).outcome == "launched"
    accounting.sweep(ctx, now=NOW)
    fires = ledger(engine, state.schedule_id)
    assert fires[TEN]["outcome"] == "launched" and fires[TEN]["source"] == "recovery"
    assert len(store.list_runs(engine, schedule_id=state.schedule_id)) == 2
    assert ctx.kube.events[0][:2] == ("Normal", "FireRecovered")
    # A second sweep, and the Job's own late retry: still two runs.
    accounting.sweep(ctx, now=NOW + timedelta(minutes=1))
    assert job_fire(engine, state.schedule_id, TEN).outcome == "duplicate"
    assert len(store.list_runs(engine, schedule_id=state.schedule_id)) == 2


def test_a_fire_beyond_its_deadline_is_recorded_as_missed_never_silently_lost(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule, starting_deadline_seconds=60)
    later = NOW + timedelta(minutes=10)  # 10:00 ... 10:15 all unrecorded
    accounting.sweep(ctx, now=later)
    fires = ledger(engine, state.schedule_id)
    missed = [f for f in fires.values() if f["reason"].startswith("missed")]
    assert {f["outcome"] for f in fires.values()} == {"skipped"} and len(missed) == len(fires)
    assert store.list_runs(engine, schedule_id=state.schedule_id) == []
    row = store.get_schedule(engine, state.schedule_id)
    assert row["last_run_status"] == "missed" and "missed" in row["last_error"]
    assert row["status"] == "scheduled"
    assert {e[1] for e in ctx.kube.events} == {"FireMissed"}
    # The missed keys are claimed: a late delivery starts nothing.
    assert job_fire(engine, state.schedule_id, TEN).outcome == "duplicate"


def test_a_sweep_posts_one_event_a_schedule_naming_every_fire_it_recovered_or_missed(
    ctx, engine, add_schedule
):
    """Under a backlog an Event a fire was most of the sweep's API requests; each fact still
    reaches an Event: one for the fires it launched, one for those it recorded missed."""
    state = every_five_minutes(add_schedule, missed_fires="catchUp", catch_up_window_seconds=420)
    later = NOW + timedelta(minutes=10)  # 10:00 ... 10:05 beyond the 7-minute window, then 2
    accounting.sweep(ctx, now=later)
    fires = ledger(engine, state.schedule_id)
    launched = [at for at, f in fires.items() if f["outcome"] == "launched"]
    missed = [at for at, f in fires.items() if f["reason"] and f["reason"].startswith("missed")]
    assert len(launched) == 2 and len(missed) == 2
    events = {reason: message for _, reason, message in ctx.kube.events}
    assert len(ctx.kube.events) == 2 and set(events) == {"FireRecovered", "FireMissed"}
    assert all(utc_iso(at) in events["FireRecovered"] for at in launched)
    assert all(utc_iso(at) in events["FireMissed"] for at in missed)


def test_latest_launches_only_the_latest_owed_fire_and_records_older_ones(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule, starting_deadline_seconds=300)
    accounting.sweep(ctx, now=NOW)
    fires = ledger(engine, state.schedule_id)
    assert fires[FIVE_PAST]["outcome"] == "launched"
    assert fires[TEN]["outcome"] == "skipped" and "superseded" in fires[TEN]["reason"]


def test_a_fire_whose_job_is_still_trying_is_not_declared_missed(ctx, engine, add_schedule):
    state = every_five_minutes(add_schedule, starting_deadline_seconds=60)
    ctx.kube.active_jobs.add(("acme", f"nightly-x-{int(TEN.timestamp()) // 60}"))
    accounting.sweep(ctx, now=NOW + timedelta(minutes=3))
    assert TEN not in ledger(engine, state.schedule_id)
    ctx.kube.active_jobs.clear()
    accounting.sweep(ctx, now=NOW + timedelta(minutes=4))
    assert ledger(engine, state.schedule_id)[TEN]["reason"].startswith("missed")


def test_a_late_one_time_release_is_missed_only_when_its_fire_was_not_delivered(
    ctx, engine, add_schedule
):
    run_at = NOW - timedelta(minutes=20)
    for delivered in (True, False):
        state = add_schedule(one_time_state(run_at), effective_from=run_at - timedelta(days=1))
        if delivered:
            with engine.raw_connection() as raw:
                launch(
                    raw.driver_connection, ClockFire(state.schedule_id, run_at, "once"), now=run_at
                )
                raw.driver_connection.commit()
        entry = Release(run_at, str(state.schedule_id), "acme", "nightly", "nightly-x", 300)
        onetime.release(ctx, entry, NOW)
        row = store.get_schedule(engine, state.schedule_id)
        expected = ("completed", "queued") if delivered else ("failed", "missed")
        assert (row["status"], row["last_run_status"]) == expected


def test_a_miss_decided_before_an_edit_does_not_overwrite_the_edit(ctx, engine, add_schedule):
    run_at = NOW - timedelta(minutes=20)
    state = add_schedule(one_time_state(run_at), effective_from=run_at - timedelta(days=1))
    decided_from = store.get_schedule(engine, state.schedule_id)
    new_run_at = NOW + timedelta(hours=1)
    store.upsert_schedule(
        engine,
        one_time_state(new_run_at, schedule_id=state.schedule_id, generation=2),
        published_at=NOW,
    )
    key = fire_key_for(state.schedule_id, run_at)
    assert not store.record_missed(engine, decided_from, run_at, key, "missed: too late")
    row = store.get_schedule(engine, state.schedule_id)
    assert (row["status"], row["run_at"]) == ("scheduled", new_run_at)
    assert store.list_fires(engine, state.schedule_id) == []


def test_a_one_time_miss_keeps_its_reason_through_a_registration_that_read_the_row_before_it(
    ctx, engine, add_schedule
):
    """After a restart the release records the miss while the schedule's resume registers it
    again from the row it read before: the row stays failed, and keeps why (the status's
    `lastError` and its Missed message come from it)."""
    run_at = NOW - timedelta(minutes=20)
    state = add_schedule(one_time_state(run_at), effective_from=run_at - timedelta(days=1))
    read_before = store.get_schedule(engine, state.schedule_id)
    key = fire_key_for(state.schedule_id, run_at)
    assert store.record_missed(engine, read_before, run_at, key, "missed: 20 minutes late")
    store.upsert_schedule(engine, state, published_at=NOW)
    row = store.get_schedule(engine, state.schedule_id)
    assert (row["status"], row["last_run_status"]) == ("failed", "missed")
    assert row["last_error"] == "missed: 20 minutes late"
    # A new instant is a new fire: what the old one missed is no error of it.
    later = NOW + timedelta(hours=1)
    store.upsert_schedule(
        engine, one_time_state(later, schedule_id=state.schedule_id, generation=2), published_at=NOW
    )
    row = store.get_schedule(engine, state.schedule_id)
    assert (row["status"], row["last_error"]) == ("scheduled", None)


def test_a_one_time_schedule_paused_over_its_run_at_is_missed_not_left_pending(
    ctx, engine, add_schedule
):
    run_at = NOW - timedelta(minutes=30)
    state = add_schedule(one_time_state(run_at), effective_from=run_at - timedelta(days=1))
    store.upsert_schedule(
        engine,
        one_time_state(run_at, schedule_id=state.schedule_id, status="paused", generation=2),
        published_at=run_at - timedelta(hours=1),
    )
    store.upsert_schedule(
        engine,
        one_time_state(run_at, schedule_id=state.schedule_id, generation=3),
        published_at=NOW - timedelta(minutes=5),
    )
    accounting.sweep(ctx, now=NOW)
    row = store.get_schedule(engine, state.schedule_id)
    assert (row["status"], row["last_run_status"]) == ("failed", "missed")
    assert "paused or invalid" in row["last_error"]
    assert store.list_runs(engine, schedule_id=state.schedule_id) == []


def test_only_one_replica_sweeps_at_a_time(ctx, engine, add_schedule):
    every_five_minutes(add_schedule)
    with engine.connect() as other:
        other.exec_driver_sql(f"SELECT pg_advisory_lock({accounting.ADVISORY_LOCK})")
        assert accounting.sweep(ctx, now=NOW) == -1
        other.exec_driver_sql(f"SELECT pg_advisory_unlock({accounting.ADVISORY_LOCK})")
    assert accounting.sweep(ctx, now=NOW) == 1


def test_fires_their_jobs_recorded_cost_the_sweep_no_run_and_no_event(ctx, engine, add_schedule):
    state = every_five_minutes(add_schedule)
    for at in (TEN, FIVE_PAST):
        assert job_fire(engine, state.schedule_id, at).outcome == "launched"
    assert accounting.sweep(ctx, now=NOW) == 0
    assert store.get_schedule(engine, state.schedule_id)["accounted_until"] == FIVE_PAST
    assert len(store.list_fires(engine, state.schedule_id)) == 2 and ctx.kube.events == []


def test_a_fire_whose_job_is_stuck_is_launched_by_the_operator_and_reported_once(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule, starting_deadline_seconds=300)
    stuck_job = ("acme", f"nightly-x-{int(FIVE_PAST.timestamp()) // 60}")
    ctx.kube.active_jobs.add(stuck_job)  # its pod waits for an image that is not there
    accounting.sweep(ctx, now=NOW)
    accounting.sweep(ctx, now=NOW + timedelta(seconds=30))
    assert ledger(engine, state.schedule_id)[FIVE_PAST]["outcome"] == "launched"
    reasons = [e[1] for e in ctx.kube.events]
    assert reasons.count("FireStuck") == 1 and "FireRecovered" in reasons
    row = store.get_schedule(engine, state.schedule_id)
    assert "ErrImageNeverPull" in row["fire_problem"]
    status = status_for(row, None, 1, [], NOW)
    fires = next(c for c in status["conditions"] if c["type"] == "FiresHealthy")
    assert (fires["status"], fires["reason"]) == ("False", "FireStuck")
    # The next fire its own Job delivers clears the problem.
    later = FIVE_PAST + timedelta(minutes=5)
    assert job_fire(engine, state.schedule_id, later).outcome == "launched"
    assert store.get_schedule(engine, state.schedule_id)["fire_problem"] is None


def stuck_pod(state, job: str, reason: str, message: str) -> dict:
    labels = {SCHEDULE_UID_LABEL: str(state.schedule_id), "batch.kubernetes.io/job-name": job}
    waiting = {"reason": reason, "message": message}
    return {
        "metadata": {"name": f"{job}-abcde", "namespace": "acme", "labels": labels},
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": waiting}}]},
    }


def test_a_launcher_pod_that_cannot_start_is_reported_once_with_its_cause(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule, starting_deadline_seconds=300)
    job = f"nightly-x-{int(FIVE_PAST.timestamp()) // 60}"
    ctx.kube.active_jobs.add(("acme", job))
    missing = 'Container image "localhost/wfclock:gone" is not present with pull policy of Never'
    ctx.kube.pending_pods.append(stuck_pod(state, job, "ErrImageNeverPull", missing))
    refreshed = []
    accounting.sweep(ctx, now=NOW, on_change=lambda ns, name: refreshed.append((ns, name)))
    # Later sweeps, the one that launches the fire itself included: no second report.
    accounting.sweep(ctx, now=NOW + timedelta(seconds=30))
    accounting.sweep(ctx, now=NOW + timedelta(seconds=60))
    warnings = [e for e in ctx.kube.events if e[1].startswith(("Launcher", "FireStuck"))]
    assert [e[1] for e in warnings] == ["LauncherImageUnavailable"]
    assert "FireRecovered" in [e[1] for e in ctx.kube.events]  # the fire itself is launched
    assert f"pod {job}-abcde of Job {job} cannot start: ErrImageNeverPull" in warnings[0][2]
    assert "localhost/wfclock:gone" in warnings[0][2] and ("acme", "nightly") in refreshed
    row = store.get_schedule(engine, state.schedule_id)
    fires = next(
        c for c in status_for(row, None, 1, [], NOW)["conditions"] if c["type"] == "FiresHealthy"
    )
    assert (fires["status"], fires["reason"]) == ("False", "LauncherImageUnavailable")
    # The Secret gone instead: a new problem, a new report.
    ctx.kube.pending_pods[:] = [
        stuck_pod(state, job, "CreateContainerConfigError", 'secret "wfclock-database" not found')
    ]
    accounting.sweep(ctx, now=NOW + timedelta(seconds=90))
    assert ctx.kube.events[-1][1] == "LauncherConfigError"
    assert 'secret "wfclock-database" not found' in ctx.kube.events[-1][2]


def test_a_launcher_pod_the_kubelet_rewords_is_reported_once(ctx, engine, add_schedule):
    """Under load the kubelet first says it could not sync its Secret cache, and then that the
    Secret is not found: one pod, one problem, one report."""
    state = every_five_minutes(add_schedule, starting_deadline_seconds=300)
    job = f"nightly-x-{int(FIVE_PAST.timestamp()) // 60}"
    ctx.kube.active_jobs.add(("acme", job))
    for second, words in enumerate(
        [
            "failed to sync secret cache: timed out waiting for the condition",
            'secret "wfclock-database" not found',
        ]
    ):
        ctx.kube.pending_pods[:] = [stuck_pod(state, job, "CreateContainerConfigError", words)]
        accounting.sweep(ctx, now=NOW + timedelta(seconds=30 * second))
    warnings = [e for e in ctx.kube.events if e[1].startswith("Launcher")]
    assert [(e[1], e[2].split(": ")[-1]) for e in warnings] == [
        ("LauncherConfigError", "timed out waiting for the condition")
    ]
    # Another pod of the same Job (the Job's next try) is a problem of its own.
    other = stuck_pod(state, job, "CreateContainerConfigError", "failed to sync secret cache")
    other["metadata"]["name"] = f"{job}-fghij"
    ctx.kube.pending_pods[:] = [other]
    accounting.sweep(ctx, now=NOW + timedelta(seconds=90))
    assert f"pod {job}-fghij " in ctx.kube.events[-1][2]


def test_the_launcher_secret_of_a_namespace_is_put_back_once_a_sweep_whatever_its_stuck_pods(
    engine, database_url, add_schedule
):
    settings = Settings(database_url=database_url, database_credentials_source="wfclock/db")
    ctx = Context(settings, engine, FakeKube(engine), clock=lambda: NOW)
    pods = []
    for name in ("nightly-x", "hourly-x", "daily-x"):
        state = add_schedule(
            make_state(cron="*/5 * * * *", timezone="UTC", registered_name=name, name=name),
            effective_from=NOW - timedelta(minutes=8),
        )
        pod = stuck_pod(state, f"{name}-1", "CreateContainerConfigError", "secret not found")
        pods.append(pod)
    ctx.kube.pending_pods[:] = pods
    accounting.sweep(ctx, now=NOW)
    assert [c.args for c in ctx.kube.calls if c.name == "copy_secret"] == [
        ("wfclock/db", "acme", "wfclock-database")
    ]
    assert [e[1] for e in ctx.kube.events].count("LauncherConfigError") == 3


def test_a_pod_in_another_namespace_wearing_a_schedules_label_is_not_its_launcher(
    ctx, engine, add_schedule
):
    state = every_five_minutes(add_schedule)
    elsewhere = stuck_pod(state, "nightly-x-1", "ErrImageNeverPull", "gone")
    elsewhere["metadata"]["namespace"] = "other-tenant"
    ctx.kube.pending_pods.append(elsewhere)
    accounting.sweep(ctx, now=NOW)
    assert not [e for e in ctx.kube.events if e[1].startswith("Launcher")]
    assert "ErrImageNeverPull" not in (
        store.get_schedule(engine, state.schedule_id)["fire_problem"] or ""
    )


def test_a_secret_that_cannot_be_put_back_still_leaves_its_problem_reported(
    engine, database_url, add_schedule
):
    settings = Settings(database_url=database_url, database_credentials_source="wfclock/db")
    ctx = Context(settings, engine, FakeKube(engine), clock=lambda: NOW)

    def source_gone(*args, **kwargs):
        raise RuntimeError('secrets "db" not found')

    ctx.kube.copy_secret = source_gone
    state = every_five_minutes(add_schedule)
    ctx.kube.pending_pods.append(
        stuck_pod(state, "nightly-x-1", "CreateContainerConfigError", "secret not found")
    )
    accounting.sweep(ctx, now=NOW)
    assert [e[1] for e in ctx.kube.events if e[1].startswith("Launcher")] == ["LauncherConfigError"]


def test_a_deleted_schedules_stuck_pod_is_not_reported(ctx, engine, add_schedule):
    state = every_five_minutes(add_schedule)
    store.mark_deleted(engine, state.schedule_id)
    ctx.kube.pending_pods.append(stuck_pod(state, "nightly-x-1", "ErrImageNeverPull", "gone"))
    accounting.sweep(ctx, now=NOW)
    assert ctx.kube.events == []


def test_fires_before_the_pruned_ledger_horizon_are_not_accounted_again(
    ctx, engine, add_schedule, conn
):
    """After an outage longer than the retention, the sweep starts at the ledger's horizon: a
    fire whose row was pruned is not recorded as missed (it launched), nor launched again."""
    hourly = make_state(cron="0 * * * *", timezone="UTC", registered_name="hourly-x")
    state = add_schedule(hourly, effective_from=NOW - timedelta(days=200))
    old, recent = TEN - timedelta(days=150), TEN - timedelta(hours=1)
    for at in (old, recent):  # delivered by their Jobs while the operator was away
        request = ClockFire(state.schedule_id, at, "hourly-x", Registration("0 * * * *", "UTC"))
        assert launch(conn, request, now=at + timedelta(seconds=2)).outcome == "launched"
    conn.execute(
        "UPDATE workflow_schedule_fires SET last_delivered_at = scheduled_for + interval '1 min'"
    )
    conn.commit()
    horizon = NOW - timedelta(days=90)
    assert store.prune_fires(engine, older_than=horizon).rows == 1  # the fire of 150 days ago
    accounting.sweep(ctx)
    fires = ledger(engine, state.schedule_id)
    assert old not in fires and min(fires) >= horizon, "nothing before the horizon is recorded"
    assert store.get_schedule(engine, state.schedule_id)["accounted_until"] >= horizon
    assert not [e for e in ctx.kube.events if old.strftime("%Y-%m-%dT%H:%M:%SZ") in e[2]]


def test_a_one_time_fire_older_than_the_pruned_horizon_is_still_recorded_as_missed(
    ctx, engine, add_schedule
):
    run_at = NOW - timedelta(days=100)  # never delivered: the operator and its Job were away
    state = add_schedule(one_time_state(run_at), effective_from=run_at - timedelta(days=1))
    store.prune_fires(engine, older_than=NOW - timedelta(days=90))
    accounting.sweep(ctx)
    (fire,) = store.list_fires(engine, state.schedule_id)
    assert (fire["scheduled_for"], fire["outcome"]) == (run_at, "skipped")
    assert store.get_schedule(engine, state.schedule_id)["status"] == "failed"


def test_fires_the_sweep_records_without_a_run_get_one_event_per_reason(ctx, engine, add_schedule):
    """catchUp over a running run with overlap Skip: the sweep's deliveries are skipped with
    reason overlap, and one Event names how many, the first and the last."""
    state = every_five_minutes(add_schedule, missed_fires="catchUp", overlap_policy="Skip")
    with engine.raw_connection() as raw:  # a run of the schedule still going
        launch(
            raw.driver_connection,
            RunNow(state.schedule_id, "still-running"),
            now=NOW,
        )
        raw.commit()
    accounting.sweep(ctx, now=NOW + timedelta(minutes=5))  # owes 10:00, 10:05 (and 10:10)
    fires = {at: f for at, f in ledger(engine, state.schedule_id).items() if f["kind"] == "clock"}
    assert {f["outcome"] for f in fires.values()} == {"skipped"} and len(fires) > 1
    [(kind, reason, message)] = ctx.kube.events
    assert (kind, reason) == ("Normal", "FireSkipped")
    assert message.startswith(f"{len(fires)} fires of 2026-11-25T10:00:00Z ... ")
    assert "skipped: overlap: run " in message and "is still queued" in message
