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
from wfclock.core.runcontrol import traceparent_for, valid_traceparent
from wfclock.db import store
from wfclock.launcher import ClockFire, InvalidStart, Registration, RunNow, launch

from ..conftest import make_state
from ..support import reconcile

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}


@pytest.fixture
def ctx(engine, database_url):
    return reconcile.context(engine, database_url, NOW)


def apply(ctx, uid, generation=1, trigger=HOURLY, **kwargs):
    """A reconcile of schedule `uid` (see `tests/support/reconcile.py`), hourly unless told."""
    return reconcile.apply(ctx, uid, trigger, generation, **kwargs)


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


# --- run now --------------------------------------------------------------------------------------


def run_now(conn, state, request_id="r1", **kw):
    return launch(conn, RunNow(state.schedule_id, request_id, "kubectl-annotate", **kw), now=NOW)


def test_run_now_starts_one_manual_run_with_provenance_and_the_clock_payload(conn, add_schedule):
    state = add_schedule(make_state())
    result = run_now(conn, state, "2026-11-25.deploy-42")
    assert result.outcome == "launched"
    assert result.key == f"workflow-schedule-run-now:{state.schedule_id}:2026-11-25.deploy-42"
    trigger_type, payload, metadata = conn.execute(
        "SELECT trigger_type, payload, trigger_metadata FROM workflow_runs WHERE run_id = %s",
        (result.run_id,),
    ).fetchone()
    assert trigger_type == "manual"
    assert metadata["scheduleId"] == str(state.schedule_id)
    assert metadata["requestId"] == "2026-11-25.deploy-42"
    assert metadata["requestedBy"] == "kubectl-annotate"
    assert payload["triggerType"] == "recurring" and payload["scheduledFor"] == payload["firedAt"]
    kind, outcome = conn.execute(
        "SELECT kind, outcome FROM workflow_schedule_fires WHERE fire_key = %s", (result.key,)
    ).fetchone()
    assert (kind, outcome) == ("manual", "launched")


def test_the_same_run_now_id_again_starts_nothing_more(conn, add_schedule):
    state = add_schedule(make_state())
    first = run_now(conn, state)
    again = run_now(conn, state)
    assert (again.outcome, again.run_id) == ("duplicate", first.run_id)
    assert len(runs_of(conn, first.key)) == 1
    assert run_now(conn, state, "r2").outcome == "launched"


def test_two_replicas_answering_one_run_now_request_at_once_start_one_run(
    database_url, add_schedule
):
    state = add_schedule(make_state())

    def ask():
        with psycopg.connect(database_url) as conn:
            return run_now(conn, state).outcome

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(lambda _: ask(), range(6)))
    assert outcomes == ["duplicate"] * 5 + ["launched"]


def test_a_paused_schedule_refuses_run_now_and_the_id_stays_spent_after_resume(
    conn, add_schedule, engine
):
    state = add_schedule(make_state(status="paused", pause_reason="freeze"))
    refused = run_now(conn, state)
    assert (refused.outcome, refused.reason, refused.run_id) == ("skipped", "paused: freeze", None)
    store.update_schedule(engine, state.schedule_id, status="scheduled")
    assert run_now(conn, state).outcome == "duplicate"
    assert runs_of(conn, refused.key) == []


def test_an_invalid_schedule_refuses_run_now_saying_why(conn, add_schedule, engine):
    state = add_schedule(make_state())
    store.disable_schedule(engine, state.schedule_id, "spec.trigger.cron: bad", published_at=NOW)
    refused = run_now(conn, state)
    assert (refused.outcome, refused.reason) == ("skipped", "invalid: spec.trigger.cron: bad")


def test_a_run_now_request_id_that_cannot_be_a_key_is_refused_before_anything_is_written(
    conn, add_schedule
):
    state = add_schedule(make_state())
    with pytest.raises(InvalidStart, match="run-now request id"):
        run_now(conn, state, "no spaces please")


def test_run_now_ignores_the_overlap_policy_but_its_run_holds_the_policy_for_fires(
    conn, add_schedule
):
    state = add_schedule(make_state(overlap_policy="Skip"))
    first = fire(conn, state)
    manual = run_now(conn, state)
    assert manual.outcome == "launched"
    finish(conn, first.run_id)
    skipped = fire(conn, state, 1)
    assert skipped.outcome == "skipped" and str(manual.run_id) in skipped.reason


# --- traces --------------------------------------------------------------------------------------


def test_every_run_carries_a_w3c_traceparent_shared_by_the_deliveries_of_its_fire(
    conn, add_schedule
):
    state = add_schedule(make_state())
    launched = fire(conn, state)
    [(_, _, metadata)] = runs_of(conn, launched.key)
    assert valid_traceparent(metadata["traceparent"])
    assert metadata["traceparent"].split("-")[1] == traceparent_for(launched.key).split("-")[1]
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    manual = run_now(conn, state, trace_parent=parent)
    [(_, _, metadata)] = runs_of(conn, manual.key)
    trace_id, span_id = metadata["traceparent"].split("-")[1:3]
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and span_id != "00f067aa0ba902b7"


# --- the operator's answer to the annotation -------------------------------------------------------


def annotated(ctx, uid, request_id, generation=1, status=None, **spec):
    """A reconcile of a schedule whose run-now annotation `kubectl annotate` set."""
    written_by = {
        "manager": "kubectl-annotate",
        "operation": "Update",
        "time": "2026-11-25T11:59:30Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {"f:wfclock.dev/run-now": {}}}},
    }
    metadata = {
        "annotations": {"wfclock.dev/run-now": request_id},
        "managedFields": [written_by],
    }
    return apply(ctx, uid, generation, status=status, metadata=metadata, **spec)


def test_the_operator_answers_a_run_now_annotation_once_and_names_who_set_it(ctx):
    uid = str(uuid.uuid4())
    status = annotated(ctx, uid, "r1")
    answer = status["runNow"]
    assert answer["outcome"] == "launched" and answer["requestId"] == "r1"
    assert answer["requestedBy"] == "kubectl-annotate (Update at 2026-11-25T11:59:30Z)"
    assert status["recentFires"][0]["kind"] == "manual"
    # The next reconcile (same id, its answer in the status) starts nothing and posts nothing.
    again = annotated(ctx, uid, "r1", 2, status)
    assert again["runNow"] == answer
    # A replica that has not seen the answer yet: the ledger answers, no second run.
    other = annotated(ctx, uid, "r1", 2)
    assert other["runNow"]["outcome"] == "duplicate"
    assert [e[1] for e in ctx.kube.events].count("RunNow") == 1


def test_a_paused_schedule_refuses_the_annotation_with_a_warning_event(ctx):
    uid = str(uuid.uuid4())
    status = annotated(ctx, uid, "r1", paused=True, pauseReason="freeze")
    assert status["runNow"]["outcome"] == "refused"
    assert ctx.kube.events[-1][:2] == ("Warning", "RunNowRefused")
    assert "paused: freeze" in ctx.kube.events[-1][2]


def test_an_invalid_schedule_refuses_the_annotation_with_a_warning_event(ctx):
    uid = str(uuid.uuid4())
    status = annotated(ctx, uid, "r1", overlapPolicy="Sometimes")
    assert status["phase"] == "Invalid" and status["runNow"]["outcome"] == "refused"
    warning = ctx.kube.events[-1]
    assert warning[1] == "RunNowRefused" and "spec.overlapPolicy" in warning[2]


def test_the_accounting_sweep_releases_a_buffered_fire_the_trigger_did_not(
    conn, add_schedule, engine
):
    state = add_schedule(make_state(overlap_policy="BufferOne"))
    first = fire(conn, state)
    waiting = fire(conn, state, 1)
    conn.execute("ALTER TABLE workflow_runs DISABLE TRIGGER release_buffered_fire")
    finish(conn, first.run_id)
    conn.execute("ALTER TABLE workflow_runs ENABLE TRIGGER release_buffered_fire")
    conn.commit()
    assert ledger(conn, waiting.key)[0] == "buffered"
    assert store.release_buffered_fires(engine) == 1
    assert ledger(conn, waiting.key)[0] == "launched"
    assert store.release_buffered_fires(engine) == 0


# --- signals: metrics ----------------------------------------------------------------------------


def samples(collector) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_metrics_count_skipped_fires_by_reason_and_show_per_schedule_ages_only_when_asked(
    conn, add_schedule, engine
):
    from wfclock.controller.metrics import LedgerCollector

    state = add_schedule(make_state(overlap_policy="Skip", next_fire_at=NOW - timedelta(hours=1)))
    fire(conn, state)
    fire(conn, state, 1)  # overlap
    fire(conn, state, 2)  # overlap
    run_now(conn, add_schedule(make_state(status="paused")))  # a refusal, not a clock fire
    shown = samples(LedgerCollector(engine))
    assert shown[("wfclock_fires_skipped", (("reason", "overlap"),))] == 2
    assert not any(name == "wfclock_fires_skipped" and labels != (("reason", "overlap"),)
                   for name, labels in shown)  # fmt: skip
    assert not any(name.startswith("wfclock_schedule_") for name, _ in shown)
    per_schedule = samples(LedgerCollector(engine, per_schedule=True))
    labels = (("namespace", "acme"), ("schedule", "nightly"))
    assert per_schedule[("wfclock_schedule_seconds_since_last_fire", labels)] > 0
    assert ("wfclock_schedule_next_fire_overdue_seconds", labels) in per_schedule
