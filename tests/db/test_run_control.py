"""Run control against a real Postgres: pause reasons, recent fires in the status, overlap
policies decided in the launcher's claim (also under concurrent deliveries), buffered fires,
run-now requests and the trace each run carries."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.controller import reconciler
from wfclock.controller.context import Context
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch
from wfclock.settings import Settings

from ..conftest import make_state
from ..support.fake_kube import FakeKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"
HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}


@pytest.fixture
def ctx(engine, database_url):
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: NOW)


def apply(ctx, uid, generation=1, trigger=HOURLY, **spec):
    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": "2026-11-25T11:59:00Z",
    }
    body = {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": trigger}
    return reconciler.reconcile(ctx, meta, {**body, **spec}, {})


# --- pause with a reason ------------------------------------------------------------------------


def test_pause_and_resume_events_and_the_status_carry_the_pause_reason(ctx, engine):
    uid = str(uuid.uuid4())
    apply(ctx, uid)
    status = apply(ctx, uid, 2, paused=True, pauseReason="quarter-end freeze")
    assert status["pauseReason"] == "quarter-end freeze"
    assert store.get_schedule(engine, uuid.UUID(uid))["pause_reason"] == "quarter-end freeze"
    apply(ctx, uid, 3, paused=True, pauseReason="freeze extended")
    status = apply(ctx, uid, 4)
    assert status["pauseReason"] is None
    assert store.get_schedule(engine, uuid.UUID(uid))["pause_reason"] is None
    assert [e[1] for e in ctx.kube.events] == [
        "Registered",
        "Paused",
        "PauseReasonChanged",
        "Resumed",
    ]
    paused, changed, resumed = (e[2] for e in ctx.kube.events[1:])
    assert paused.endswith(": quarter-end freeze")
    assert changed == "still paused: freeze extended"
    assert resumed.endswith("(it was paused: freeze extended)")


# --- overlap policies ----------------------------------------------------------------------------

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REGISTRATION = Registration("0 * * * *", "Europe/Berlin")


def fire(conn, state, hours: int = 0, source: str = "job"):
    at = AT + timedelta(hours=hours)
    return launch(conn, ClockFire(state.schedule_id, at, source, REGISTRATION), now=NOW)


def finish(conn, run_id, status="succeeded"):
    conn.execute("UPDATE workflow_runs SET status = %s WHERE run_id = %s", (status, run_id))
    conn.commit()


def runs_of(conn, key):
    return conn.execute(
        "SELECT run_id, payload->>'scheduledFor', trigger_metadata FROM workflow_runs "
        "WHERE trigger_fire_key = %s",
        (key,),
    ).fetchall()


def ledger(conn, key):
    return conn.execute(
        "SELECT outcome, reason, run_id FROM workflow_schedule_fires WHERE fire_key = %s", (key,)
    ).fetchone()


def test_allow_starts_a_run_for_every_fire_while_one_is_running(conn, add_schedule):
    state = add_schedule(make_state())
    first, second = fire(conn, state), fire(conn, state, 1)
    assert (first.outcome, second.outcome) == ("launched", "launched")


def test_skip_records_a_fire_during_an_unfinished_run_as_skipped_with_reason_overlap(
    conn, add_schedule
):
    state = add_schedule(make_state(overlap_policy="Skip"))
    first = fire(conn, state)
    conn.execute("UPDATE workflow_runs SET status = 'running' WHERE run_id = %s", (first.run_id,))
    second = fire(conn, state, 1)
    assert second.outcome == "skipped"
    assert second.reason == f"overlap: run {first.run_id} is still running"
    assert ledger(conn, second.key)[:1] == ("skipped",) and runs_of(conn, second.key) == []
    finish(conn, first.run_id, "failed")  # failed is finished too
    assert fire(conn, state, 2).outcome == "launched"


def test_buffer_one_launches_the_waiting_fire_by_its_own_key_when_the_run_finishes(
    conn, add_schedule, engine
):
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    first = fire(conn, state)
    waiting = fire(conn, state, 1)
    further = fire(conn, state, 2)
    assert (waiting.outcome, waiting.run_id) == ("buffered", None)
    assert waiting.reason == f"overlap: waits for run {first.run_id} (queued) to finish"
    assert further.outcome == "skipped" and "another fire already waits" in further.reason
    assert runs_of(conn, waiting.key) == []
    finish(conn, first.run_id)
    outcome, reason, run_id = ledger(conn, waiting.key)
    assert outcome == "launched" and run_id is not None and reason.startswith("buffered")
    [(run, scheduled_for, metadata)] = runs_of(conn, waiting.key)
    assert run == run_id and scheduled_for == "2026-11-25T10:00:00Z"
    assert metadata["bufferedSince"] and metadata["fireKey"] == waiting.key
    # A late delivery of the buffered fire is a duplicate of the run it got; no second run.
    again = fire(conn, state, 1)
    assert (again.outcome, again.run_id) == ("duplicate", run_id)
    assert len(runs_of(conn, waiting.key)) == 1
    row = store.get_schedule(engine, state.schedule_id)
    assert row["last_run_id"] == run_id


def test_a_buffered_fire_of_a_schedule_paused_meanwhile_is_skipped_not_launched(
    conn, add_schedule, engine
):
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    first = fire(conn, state)
    waiting = fire(conn, state, 1)
    store.update_schedule(engine, state.schedule_id, status="paused")
    finish(conn, first.run_id, "cancelled")
    outcome, reason, run_id = ledger(conn, waiting.key)
    assert (outcome, run_id) == ("skipped", None)
    assert reason == "paused (it waited for a running run)"


def test_a_deleted_run_lets_the_buffered_fire_go(conn, add_schedule):
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    first = fire(conn, state)
    waiting = fire(conn, state, 1)
    conn.execute("DELETE FROM workflow_runs WHERE run_id = %s", (first.run_id,))
    conn.commit()
    assert ledger(conn, waiting.key)[0] == "launched"


def test_a_delivery_that_waited_for_a_finishing_run_decides_from_the_finished_run(
    database_url, add_schedule
):
    """The worker's transaction finishes the run (its trigger holds the schedule row) while a
    fire is delivered: the delivery waits, then sees the run finished and launches. Judged from
    the runs as they were before it waited, it would stay buffered with nothing to release it."""
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    with psycopg.connect(database_url, autocommit=True) as setup:
        first = fire(setup, state)
    with psycopg.connect(database_url) as worker:
        worker.execute(
            "UPDATE workflow_runs SET status = 'succeeded' WHERE run_id = %s", (first.run_id,)
        )
        with ThreadPoolExecutor(1) as pool:
            delivery = pool.submit(_deliver, database_url, state, 1)
            time.sleep(0.5)
            assert not delivery.done()  # waits for the schedule row
            worker.commit()
            assert delivery.result(timeout=30).outcome == "launched"


def test_a_run_that_finishes_while_a_delivery_holds_the_schedule_releases_what_it_buffered(
    database_url, add_schedule
):
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    with psycopg.connect(database_url, autocommit=True) as setup:
        first = fire(setup, state)
    with psycopg.connect(database_url) as delivering, ThreadPoolExecutor(1) as pool:
        with delivering.transaction():
            waiting = fire(delivering, state, 1)
            assert waiting.outcome == "buffered"
            finished = pool.submit(_finish_in_own_connection, database_url, first.run_id)
            time.sleep(0.5)
            assert not finished.done()  # the run's trigger waits for the schedule row
        finished.result(timeout=30)
        assert ledger(delivering, waiting.key)[0] == "launched"


def _deliver(database_url, state, hours):
    with psycopg.connect(database_url, autocommit=True) as conn:
        return fire(conn, state, hours)


def _finish_in_own_connection(database_url, run_id):
    with psycopg.connect(database_url) as conn:
        finish(conn, run_id)


@pytest.mark.parametrize("policy", ["Skip", "BufferOne"])
def test_concurrent_deliveries_with_a_run_finishing_start_each_fire_once(
    database_url, add_schedule, policy
):
    """Three fires, each delivered four times at once, while the running run finishes: every
    fire key ends launched with exactly one run, buffered, or skipped; never two runs."""
    for _ in range(3):
        state = add_schedule(make_state(overlap_policy=policy))
        with psycopg.connect(database_url, autocommit=True) as setup:
            first = fire(setup, state)
        jobs = [(_deliver, database_url, state, h) for h in (1, 2, 3) for _ in range(4)]
        jobs.append((_finish_in_own_connection, database_url, first.run_id))
        random.shuffle(jobs)
        with ThreadPoolExecutor(len(jobs)) as pool:
            for done in [pool.submit(*job) for job in jobs]:
                done.result(timeout=60)
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT f.fire_key, f.outcome, f.attempts, count(r.run_id) "
                "FROM workflow_schedule_fires f LEFT JOIN workflow_runs r "
                "ON r.trigger_fire_key = f.fire_key WHERE f.schedule_id = %s "
                "AND f.scheduled_for > %s GROUP BY 1, 2, 3",
                (state.schedule_id, AT),
            ).fetchall()
        assert len(rows) == 3 and all(attempts == 4 for _, _, attempts, _ in rows)
        for key, outcome, _, runs in rows:
            assert runs == (1 if outcome == "launched" else 0), (key, outcome, runs)
        outcomes = sorted(outcome for _, outcome, _, _ in rows)
        buffered = outcomes.count("buffered")
        assert buffered <= (1 if policy == "BufferOne" else 0)
        # Once the first run finished, no unfinished run of the schedule leaves a fire waiting.
        if buffered:
            with psycopg.connect(database_url) as conn:
                busy = conn.execute(
                    "SELECT count(*) FROM workflow_runs WHERE schedule_id = %s "
                    "AND NOT wfclock_run_finished(status)",
                    (state.schedule_id,),
                ).fetchone()[0]
            assert busy > 0


# --- recent fires in the status ----------------------------------------------------------------


def test_fire_history_reads_recent_fires_last_success_and_last_skip_from_the_ledger(
    conn, add_schedule, engine
):
    state = add_schedule(make_state(overlap_policy="Skip"))
    first = fire(conn, state)
    skipped = fire(conn, state, 1)
    finish(conn, first.run_id, "failed")
    second = fire(conn, state, 2)
    finish(conn, second.run_id, "succeeded")
    third = fire(conn, state, 3)
    history = store.fire_history(engine, state.schedule_id, 2)
    assert [f["run_id"] for f in history.recent] == [third.run_id, second.run_id, None]
    assert history.recent[1]["run_status"] == "succeeded"
    assert history.last_success == AT + timedelta(hours=3)  # queued is not a failure
    assert history.last_skipped["reason"] == skipped.reason
    finish(conn, third.run_id, "failed")
    assert store.fire_history(engine, state.schedule_id, 2).last_success == AT + timedelta(hours=2)
