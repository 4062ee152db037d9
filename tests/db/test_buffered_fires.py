"""Buffered fires (overlap policy BufferOne) against a real Postgres, where they could be lost,
doubled or started when they should not: the accounting sweep releasing them while workers
finish runs, a trigger edited while a fire waits, two sweeps at once, and the ledger's horizon."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.controller import reconciler
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

from ..conftest import make_state
from ..support import reconcile

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
BERLIN = Registration("0 * * * *", "Europe/Berlin")


def fire(conn, schedule_id, at, registration=BERLIN, source="job"):
    return launch(conn, ClockFire(schedule_id, at, source, registration), now=at)


def runs_of(conn, key):
    return conn.execute(
        "SELECT run_id, payload FROM workflow_runs WHERE trigger_fire_key = %s", (key,)
    ).fetchall()


def ledger(conn, key):
    return conn.execute(
        "SELECT outcome, reason, run_id FROM workflow_schedule_fires WHERE fire_key = %s", (key,)
    ).fetchone()


def finish_sql(run_id):
    return ("UPDATE workflow_runs SET status = 'succeeded' WHERE run_id = %s", (run_id,))


def buffered_behind_a_running_run(database_url, add_schedule):
    """A BufferOne schedule whose 09:00 run is queued and whose 10:00 fire waits for it."""
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    with psycopg.connect(database_url, autocommit=True) as setup:
        running = fire(setup, state.schedule_id, AT)
        waiting = fire(setup, state.schedule_id, AT + timedelta(hours=1))
    assert (running.outcome, waiting.outcome) == ("launched", "buffered")
    return running, waiting


def wait_for_lock_wait(database_url, query_part: str, unless_done=None) -> None:
    """Returns once a backend running a query containing `query_part` waits for a lock (or
    the work `unless_done` finished without waiting)."""
    with psycopg.connect(database_url, autocommit=True) as watch:
        for _ in range(200):
            if unless_done is not None and unless_done.done():
                return
            waiting = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{query_part}%",),
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError(f"no backend running {query_part!r} ever waited for a lock")


# --- the sweep's release and workers finishing runs ---------------------------------------------


@pytest.mark.parametrize("worker_order", ["a-then-b", "b-then-a"])
def test_the_sweep_releasing_while_a_worker_finishes_runs_of_two_schedules_never_deadlocks(
    database_url, engine, add_schedule, worker_order
):
    """A worker's transaction finishes the running runs of two BufferOne schedules, one after
    the other (the trigger on workflow_runs takes each schedule's row as its run finishes),
    while the accounting sweep releases buffered fires. The sweep used to take every schedule
    with a buffered fire in one transaction, in its own order: for one of the two orders it
    held the worker's second schedule while waiting for its first, and Postgres broke the
    deadlock by aborting one of them (40P01). Each buffered fire must end launched once."""
    pairs = [buffered_behind_a_running_run(database_url, add_schedule) for _ in range(2)]
    first, second = pairs if worker_order == "a-then-b" else pairs[::-1]
    deadlocks = []
    with psycopg.connect(database_url) as worker, ThreadPoolExecutor(1) as pool:
        worker.execute(*finish_sql(first[0].run_id))  # holds the first schedule's row
        sweep = pool.submit(store.release_buffered_fires, engine)
        wait_for_lock_wait(database_url, "wfclock_release_buffered")
        try:
            worker.execute(*finish_sql(second[0].run_id))
            worker.commit()
        except psycopg.errors.DeadlockDetected as error:
            deadlocks.append(f"worker: {error}")
            worker.rollback()
        try:
            sweep.result(timeout=60)
        except Exception as error:  # noqa: BLE001 - whatever wraps the 40P01, it is the finding
            deadlocks.append(f"sweep: {error}")
    assert deadlocks == []
    with psycopg.connect(database_url) as conn:
        for _, waiting in pairs:
            assert ledger(conn, waiting.key)[0] == "launched"
            assert len(runs_of(conn, waiting.key)) == 1


def test_two_sweeps_at_once_release_each_buffered_fire_once(database_url, engine, add_schedule):
    """Two replicas' sweeps (the advisory lock lost with a replica's connection) releasing the
    same buffered fires at once: each fire is launched once, by its own key."""
    pairs = [buffered_behind_a_running_run(database_url, add_schedule) for _ in range(6)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Runs finished where the trigger did not see them (a restore): only sweeps release.
        with conn.transaction():
            conn.execute("ALTER TABLE workflow_runs DISABLE TRIGGER release_buffered_fire")
            for running, _ in pairs:
                conn.execute(*finish_sql(running.run_id))
            conn.execute("ALTER TABLE workflow_runs ENABLE TRIGGER release_buffered_fire")
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(store.release_buffered_fires, engine) for _ in range(2)]
            assert sum(done.result(timeout=60) for done in started) == len(pairs)
        for _, waiting in pairs:
            assert ledger(conn, waiting.key)[0] == "launched"
            assert len(runs_of(conn, waiting.key)) == 1


def _finish_and_commit(worker, run_id) -> str | None:
    """Finishes the run in the worker's open transaction and commits; the error's SQLSTATE if
    it failed (the transaction then rolled back)."""
    try:
        worker.execute(*finish_sql(run_id))
        worker.commit()
    except psycopg.Error as error:
        worker.rollback()
        return error.sqlstate
    return None


@pytest.mark.parametrize("policy", ["Allow", "BufferOne"])
def test_two_workers_finishing_runs_of_two_schedules_in_opposite_orders_both_commit(
    database_url, engine, add_schedule, policy
):
    """Each worker's transaction finishes a run of schedule A and one of B, in opposite orders:
    rows no other transaction touches. The trigger on workflow_runs takes each run's schedule
    row as the run finishes (whatever the overlap policy), so the two transactions held A and B
    and waited for each other: Postgres aborted one (40P01) and a worker could not record that
    its runs had finished. Both commit; a fire waiting behind a run is launched once."""
    schedules = [add_schedule(make_state()) for _ in range(2)]
    with psycopg.connect(database_url, autocommit=True) as setup:
        runs = []
        for state in schedules:
            running = [fire(setup, state.schedule_id, AT + timedelta(hours=h)) for h in (0, 1)]
            store.update_schedule(engine, state.schedule_id, overlap_policy=policy)
            runs.append([*running, fire(setup, state.schedule_id, AT + timedelta(hours=2))])
    assert [eleven.outcome for *_, eleven in runs] == (
        ["buffered"] * 2 if policy == "BufferOne" else ["launched"] * 2
    )
    (a9, a10, _), (b9, b10, _) = runs
    with (
        psycopg.connect(database_url) as one,
        psycopg.connect(database_url) as two,
        ThreadPoolExecutor(1) as pool,
    ):
        one.execute(*finish_sql(a9.run_id))
        two.execute(*finish_sql(b9.run_id))
        first = pool.submit(_finish_and_commit, one, b10.run_id)
        wait_for_lock_wait(database_url, "UPDATE workflow_runs", unless_done=first)
        failures = [_finish_and_commit(two, a10.run_id), first.result(timeout=60)]
    assert failures == [None, None]
    store.release_buffered_fires(engine)  # the sweep's backstop, for a release left to it
    with psycopg.connect(database_url) as conn:
        finished = conn.execute(
            "SELECT count(*) FROM workflow_runs WHERE status = 'succeeded'"
        ).fetchone()[0]
        assert finished == 4
        for *_, eleven in runs:
            outcome = ledger(conn, eleven.key)[0]
            assert outcome == "launched" and len(runs_of(conn, eleven.key)) == 1


# --- a trigger changed while a fire waits --------------------------------------------------------

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ONE = NOON + timedelta(hours=1)
HOURLY_UTC = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
OLD_JOB = Registration("0 * * * *", "UTC")


def _edit(ctx, uid, **spec):
    """The edit reconciled at 13:00:05, published (its managedFields time) at 12:59:30."""
    edited = {"time": "2026-11-25T12:59:30Z", "fieldsV1": {"f:spec": {}}}
    trigger = spec.pop("trigger", HOURLY_UTC)
    reconcile.apply(
        ctx,
        uid,
        trigger,
        2,
        metadata={"managedFields": [edited]},
        overlapPolicy="BufferOne",
        **spec,
    )


EDITS = {
    # 13:00 is no fire of the new trigger: the old trigger's fire must not run under it.
    "cron edited": (
        lambda ctx, uid: _edit(ctx, uid, trigger={**HOURLY_UTC, "cron": "30 * * * *"}),
        ("skipped", "superseded"),
    ),
    "type switched to one-time": (
        lambda ctx, uid: _edit(
            ctx, uid, trigger={"type": "schedule", "runAt": "2026-11-25T15:00:00Z"}
        ),
        ("skipped", "superseded"),
    ),
    "paused": (lambda ctx, uid: _edit(ctx, uid, paused=True), ("skipped", "paused")),
    "deleted": (
        lambda ctx, uid: reconciler.delete(ctx, {"uid": uid, "namespace": "acme"}),
        ("skipped", "deleted"),
    ),
    # 13:00 is a fire of the new trigger too (London is on UTC in November): the new trigger
    # owes it, by the same key, and it must still run once the running run finishes.
    "zone edited, same instant": (
        lambda ctx, uid: _edit(ctx, uid, trigger={**HOURLY_UTC, "timezone": "Europe/London"}),
        ("launched", "buffered"),
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_fire_buffered_under_the_old_trigger_is_released_as_the_edited_schedule_says(
    database_url, engine, edit
):
    """The 13:00 Job of the old CronJob delivers its fire after the edit was published (12:59:30)
    but before the operator reconciled it: the 12:00 run still runs, so the fire is buffered
    under the old trigger. The edit is reconciled, then the 12:00 run finishes and the trigger
    releases the fire: it runs only when the edited schedule owes it."""
    uid = str(uuid.uuid4())
    created = reconcile.context(engine, database_url, NOON)
    reconcile.apply(created, uid, HOURLY_UTC, 1, overlapPolicy="BufferOne")
    schedule_id = uuid.UUID(uid)
    with psycopg.connect(database_url, autocommit=True) as conn:
        running = fire(conn, schedule_id, NOON, OLD_JOB)
        waiting = fire(conn, schedule_id, ONE, OLD_JOB)
        assert (running.outcome, waiting.outcome) == ("launched", "buffered")
        change, (outcome, reason_start) = EDITS[edit]
        editing = reconcile.context(engine, database_url, ONE + timedelta(seconds=5))
        change(editing, uid)
        conn.execute(*finish_sql(running.run_id))
        store.release_buffered_fires(engine)  # the sweep's backstop changes nothing more
        recorded, reason, run_id = ledger(conn, waiting.key)
        assert (recorded, reason.split(":")[0].split(" ")[0]) == (outcome, reason_start), reason
        runs = runs_of(conn, waiting.key)
        assert [run for run, _ in runs] == ([run_id] if outcome == "launched" else [])
        if outcome == "launched":
            assert runs[0][1]["timezone"] == "Europe/London"
        if edit == "cron edited":  # said when the edit is registered, not when the run ends
            [said] = [e[2] for e in editing.kube.events if e[1] == "FireSkipped"]
            assert said.startswith("the fire of 2026-11-25T13:00:00Z skipped: superseded")


# --- the ledger's horizon ------------------------------------------------------------------------


def ran_then_running(conn, schedule_id):
    """The 09:00 fire ran and finished; the 10:00 one was launched and still runs."""
    ran = fire(conn, schedule_id, AT)
    conn.execute(*finish_sql(ran.run_id))
    running = fire(conn, schedule_id, AT + timedelta(hours=1))
    assert running.outcome == "launched"
    return ran, running


def test_a_pruned_fire_delivered_again_behind_a_running_run_is_refused_not_buffered(
    database_url, engine, add_schedule
):
    """09:00 ran and finished, and the ledger was pruned past it (its row is gone). A late
    delivery of 09:00 while the 10:00 run is still running would be buffered, and the guard
    that refuses a pruned key only looked at launched claims: the release then launched 09:00 a
    second time (a second run of 09:00, once the first run left workflow_runs) or, the first run
    still there, failed on the runs' unique fire key inside the worker's update of the 10:00
    run. It is refused like a launched claim (WF001), and nothing is written."""
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        ran, running = ran_then_running(conn, state.schedule_id)
        # Rows last delivered before the horizon go: every fire here but the latest (10:00).
        horizon = conn.execute("SELECT now() + interval '1 minute'").fetchone()[0]
        assert store.prune_fires(engine, older_than=horizon).rows == 1
        assert ledger(conn, ran.key) is None
        try:
            late = fire(conn, state.schedule_id, AT, source="a Job run again by hand").outcome
        except psycopg.Error as refused:
            late = refused.sqlstate
        conn.execute(*finish_sql(running.run_id))
        store.release_buffered_fires(engine)
        assert len(runs_of(conn, ran.key)) == 1
        assert late == "WF001" and ledger(conn, ran.key) is None


def test_a_buffered_fire_that_cannot_be_released_holds_back_no_other(
    database_url, engine, add_schedule
):
    """A buffered row the guard let through before migration 0009 (a pruned key whose first run
    is still in workflow_runs) fails its release on the runs' unique fire key: the worker's
    update of its run stands, and the sweep still releases every other schedule's fire (in one
    transaction, that failure undid them all, every sweep) and says which one failed."""
    wedged = add_schedule(make_state(overlap_policy="BufferOne"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        ran, running = ran_then_running(conn, wedged.schedule_id)
        conn.execute("DELETE FROM workflow_schedule_fires WHERE fire_key = %s", (ran.key,))
        conn.execute(
            "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome) "
            "VALUES (%s, %s, %s, 'buffered')",
            (ran.key, wedged.schedule_id, AT),
        )
        healthy = [buffered_behind_a_running_run(database_url, add_schedule) for _ in range(2)]
        with conn.transaction():
            conn.execute("ALTER TABLE workflow_runs DISABLE TRIGGER release_buffered_fire")
            for first, _ in healthy:
                conn.execute(*finish_sql(first.run_id))
            conn.execute("ALTER TABLE workflow_runs ENABLE TRIGGER release_buffered_fire")
        conn.execute(*finish_sql(running.run_id))  # the trigger's release fails; the update stands
        assert conn.execute(
            "SELECT status FROM workflow_runs WHERE run_id = %s", (running.run_id,)
        ).fetchone() == ("succeeded",)
        failed = []
        released = store.release_buffered_fires(engine, on_error=lambda s, e: failed.append(s))
        assert (released, failed) == (len(healthy), [wedged.schedule_id])
        for _, waiting in healthy:
            assert ledger(conn, waiting.key)[0] == "launched"
        assert ledger(conn, ran.key)[0] == "buffered" and len(runs_of(conn, ran.key)) == 1
