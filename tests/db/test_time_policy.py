"""The launcher refuses the fires a schedule's time policy drops (daylight saving, `L`), records
them skipped with the reason, and the operator launches the shifted fire after a gap."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.controller import accounting, dstshift
from wfclock.controller.context import Context
from wfclock.core.fires import fire_key_for
from wfclock.db import store
from wfclock.db.store import get_schedule, list_fires, list_runs
from wfclock.launcher import ClockFire, Registration, launch
from wfclock.settings import Settings

from ..conftest import NOW, make_state
from ..support.fake_kube import FakeKube

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
# 01:30 in New York happens twice on 2026-11-01: 05:30Z (EDT) and 06:30Z (EST).
NY_FIRST, NY_SECOND = (
    datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
    datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
)


def job_fire(conn, state, at, policy):
    """A fire as a CronJob's Job delivers it: with its registration from the environment."""
    conn.autocommit = True
    registration = Registration(state.cron, state.timezone, policy)
    return launch(conn, ClockFire(state.schedule_id, at, "job", registration), now=NOW)


@pytest.fixture
def new_york(add_schedule):
    def add(policy):
        state = make_state(cron="30 1 * * *", timezone="America/New_York", dst_policy=policy)
        return add_schedule(state, effective_from=LONG_AGO)

    return add


def test_auto_runs_a_repeated_fixed_time_once_and_records_the_second_as_skipped(
    conn, engine, new_york
):
    state = new_york("Auto")
    first = job_fire(conn, state, NY_FIRST, "Auto")
    second = job_fire(conn, state, NY_SECOND, "Auto")
    again = job_fire(conn, state, NY_SECOND, "Auto")
    assert (first.outcome, second.outcome, again.outcome) == ("launched", "skipped", "duplicate")
    assert second.reason.startswith("dst-policy:Auto: 2026-11-01 01:30 happens twice")
    assert again.reason == second.reason
    assert len(list_runs(engine)) == 1
    fires = {f["fire_key"]: f for f in list_fires(engine)}
    refused = fires[fire_key_for(state.schedule_id, NY_SECOND)]
    assert (refused["outcome"], refused["run_id"]) == ("skipped", None)


def test_kubernetes_policy_runs_each_occurrence_like_the_cronjob(conn, engine, new_york):
    state = new_york("Kubernetes")
    outcomes = [job_fire(conn, state, at, "Kubernetes").outcome for at in (NY_FIRST, NY_SECOND)]
    assert outcomes == ["launched", "launched"] and len(list_runs(engine)) == 2


def test_a_fire_without_a_registration_is_judged_by_the_schedules_stored_policy(
    conn, engine, new_york
):
    """Catch-up and backfill deliver no registration: the launcher reads cron, zone and policy
    from the state row under its lock."""
    state = new_york("RunOnceSkipMissing")
    result = launch(conn, ClockFire(state.schedule_id, NY_SECOND, "catch-up"), now=NOW)
    assert result.outcome == "skipped" and "dst-policy:RunOnceSkipMissing" in result.reason
    assert list_runs(engine) == []


def test_a_registration_without_a_policy_keeps_the_cronjobs_raw_fires(conn, engine, new_york):
    """A Job of a CronJob registered before policies carries none: nothing is refused."""
    state = new_york(None)
    assert job_fire(conn, state, NY_SECOND, None).outcome == "launched"


def test_last_day_of_month_refuses_the_other_days_of_28_to_31(conn, engine, add_schedule):
    state = add_schedule(make_state(cron="0 18 L * *", dst_policy="Auto"), effective_from=LONG_AGO)
    # 2026-10: the CronJob (28-31) fires on the 28th, 29th, 30th and 31st at 18:00 in Berlin.
    days = [datetime(2026, 10, day, 17, 0, tzinfo=UTC) for day in (28, 29, 30)]
    days.append(datetime(2026, 10, 31, 17, 0, tzinfo=UTC))
    results = [job_fire(conn, state, at, "Auto") for at in days]
    assert [r.outcome for r in results] == ["skipped", "skipped", "skipped", "launched"]
    assert results[0].reason == (
        "not-last-day-of-month: 2026-10-28 is not the last day of its month"
    )
    assert len(list_runs(engine)) == 1


def test_older_launchers_calls_still_decide_without_a_refusal(conn, engine, new_york):
    """Launcher pods of the previous images call the 14- and 13-argument forms."""
    state = new_york("Auto")
    key = fire_key_for(state.schedule_id, NY_SECOND)
    args = [state.schedule_id, NY_SECOND, key, "x", "x", state.cron, state.timezone, True, None]
    args += [uuid.uuid4(), "job", "x", "x"]
    placeholders = ", ".join(["%s"] * len(args))
    (outcome,) = conn.execute(
        f"SELECT r_outcome FROM wfclock_fire({placeholders}, %s)", [*args, None]
    ).fetchone()
    assert outcome == "launched"
    key13 = fire_key_for(state.schedule_id, NY_FIRST)
    args[1], args[2], args[9] = NY_FIRST, key13, uuid.uuid4()
    (outcome,) = conn.execute(
        f"SELECT r_outcome FROM wfclock_fire({placeholders})", args
    ).fetchone()
    assert outcome == "launched"


def test_the_refusal_argument_is_granted_to_launcher_logins_only(conn):
    signature = (
        "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, "
        "uuid, text, text, text, text, text)"
    )
    (public,) = conn.execute(
        "SELECT has_function_privilege('public', %s, 'EXECUTE')", (signature,)
    ).fetchone()
    (launcher,) = conn.execute(
        "SELECT has_function_privilege('wfclock_launcher', %s, 'EXECUTE')", (signature,)
    ).fetchone()
    assert (public, launcher) == (False, True)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute(
            "SELECT 'wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, "
            "timestamptz, uuid, text, text, text, text)'::regprocedure"
        )


# Berlin, 2026-03-29: 02:00-03:00 does not exist; "30 2 * * *" runs at 03:00 (01:00Z) under Auto.
GAP_END = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.fixture
def berlin_gap(engine, database_url, add_schedule):
    state = add_schedule(
        make_state(cron="30 2 * * *", timezone="Europe/Berlin", dst_policy="Auto"),
        effective_from=LONG_AGO,
    )
    kube = FakeKube(engine)
    ctx = Context(Settings(database_url=database_url), engine, kube, clock=lambda: GAP_END)
    return state, ctx, kube


def test_operator_launches_the_shifted_fire_after_a_gap_once(engine, berlin_gap):
    state, ctx, kube = berlin_gap
    entry = dstshift.next_entry(
        get_schedule(engine, state.schedule_id), GAP_END - timedelta(days=3)
    )
    assert entry.run_at == GAP_END
    first = dstshift.launch_shifted(ctx, entry, GAP_END + timedelta(seconds=2))
    again = dstshift.launch_shifted(ctx, entry, GAP_END + timedelta(seconds=3))
    assert (first, again) == ("launched", "duplicate")
    (run,) = list_runs(engine)
    assert run["trigger_fire_key"] == fire_key_for(state.schedule_id, GAP_END)
    assert run["payload"]["scheduledFor"] == "2026-03-29T01:00:00Z"
    assert run["trigger_metadata"]["source"] == "dst-shift"


def test_a_shifted_fire_past_its_deadline_is_left_to_the_accounting(engine, berlin_gap):
    state, ctx, _ = berlin_gap
    entry = dstshift.next_entry(
        get_schedule(engine, state.schedule_id), GAP_END - timedelta(days=3)
    )
    late = GAP_END + timedelta(seconds=state.starting_deadline_seconds + 1)
    assert dstshift.launch_shifted(ctx, entry, late) is None
    assert list_fires(engine) == []


def test_the_kubernetes_policy_has_no_shifted_fire(engine, add_schedule):
    state = add_schedule(
        make_state(cron="30 2 * * *", timezone="Europe/Berlin", dst_policy="Kubernetes"),
        effective_from=LONG_AGO,
    )
    row = get_schedule(engine, state.schedule_id)
    assert dstshift.next_entry(row, GAP_END - timedelta(days=3)) is None


# --- the ledger around a change: fires delivered without a Job, and the accounting sweep --------


def sweep_context(engine, database_url, now):
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: now)


def test_the_shifted_fire_runs_with_no_note_that_it_is_not_a_fire(engine, berlin_gap):
    """The run of a shifted fire is a fire of the schedule: no note says the launcher's maths
    disagrees with the CronJob controller's."""
    state, ctx, _ = berlin_gap
    entry = dstshift.next_entry(
        get_schedule(engine, state.schedule_id), GAP_END - timedelta(days=3)
    )
    assert dstshift.launch_shifted(ctx, entry, GAP_END + timedelta(seconds=2)) == "launched"
    (run,) = list_runs(engine)
    assert "note" not in run["trigger_metadata"], run["trigger_metadata"]


def test_a_shifted_fire_without_a_registration_is_launched_as_a_fire_of_the_schedule(
    conn, engine, berlin_gap
):
    """Catch-up, backfill and the accounting sweep deliver no registration: the launcher reads
    the schedule's and must know the shifted fire as one of its fires (not refuse it as an
    instant the cron does not fire at)."""
    state, _, _ = berlin_gap
    result = launch(conn, ClockFire(state.schedule_id, GAP_END, "catch-up"), now=GAP_END)
    assert result.outcome == "launched", result
    (run,) = list_runs(engine)
    assert run["trigger_fire_key"] == fire_key_for(state.schedule_id, GAP_END)
    assert "note" not in run["trigger_metadata"]


def test_an_operator_down_across_the_gap_has_its_shifted_fire_launched_by_the_sweep_once(
    engine, database_url, add_schedule
):
    """The operator was down when the shifted fire was due (nothing queued it): the accounting
    sweep owes it and launches it within the deadline, by its key; later sweeps launch nothing."""
    state = add_schedule(
        make_state(cron="30 2 * * *", timezone="Europe/Berlin", dst_policy="Auto"),
        effective_from=GAP_END - timedelta(hours=1),
    )
    back = GAP_END + timedelta(minutes=2)
    accounting.sweep(sweep_context(engine, database_url, back))
    accounting.sweep(sweep_context(engine, database_url, back + timedelta(minutes=1)))
    (fire,) = list_fires(engine)
    assert (fire["fire_key"], fire["outcome"], fire["source"]) == (
        fire_key_for(state.schedule_id, GAP_END),
        "launched",
        "recovery",
    )
    (run,) = list_runs(engine)
    assert run["payload"]["scheduledFor"] == "2026-03-29T01:00:00Z"


def test_a_shifted_fire_the_operator_was_down_for_beyond_its_deadline_is_recorded_missed(
    engine, database_url, add_schedule
):
    state = add_schedule(
        make_state(cron="30 2 * * *", timezone="Europe/Berlin", dst_policy="Auto"),
        effective_from=GAP_END - timedelta(hours=1),
    )
    accounting.sweep(sweep_context(engine, database_url, GAP_END + timedelta(minutes=30)))
    (fire,) = list_fires(engine)
    assert fire["fire_key"] == fire_key_for(state.schedule_id, GAP_END)
    assert fire["outcome"] == "skipped" and fire["reason"].startswith("missed: "), fire
    assert list_runs(engine) == []


def new_york_since_just_before(add_schedule, policy="Auto", **overrides):
    state = make_state(
        cron="30 1 * * *", timezone="America/New_York", dst_policy=policy, **overrides
    )
    return add_schedule(state, effective_from=NY_FIRST - timedelta(minutes=10))


def test_a_dropped_second_occurrence_does_not_supersede_the_first_under_latest(
    engine, database_url, add_schedule
):
    """missedFires latest launches the latest owed fire and records older ones superseded; a
    fire the policy drops is no later fire that runs: the first 01:30 is the latest one."""
    state = new_york_since_just_before(
        add_schedule, missed_fires="latest", starting_deadline_seconds=7200
    )
    accounting.sweep(sweep_context(engine, database_url, NY_SECOND + timedelta(minutes=2)))
    fires = {f["scheduled_for"]: f for f in list_fires(engine)}
    assert fires[NY_FIRST]["outcome"] == "launched", fires[NY_FIRST]
    dropped = fires[NY_SECOND]
    assert dropped["outcome"] == "skipped"
    assert dropped["reason"].startswith("dst-policy:Auto: 2026-11-01 01:30 happens twice")
    assert [r["trigger_fire_key"] for r in list_runs(engine)] == [
        fire_key_for(state.schedule_id, NY_FIRST)
    ]


@pytest.mark.parametrize("missed_fires", ["latest", "skip"])
def test_a_dropped_occurrence_past_its_deadline_is_recorded_with_the_policys_reason(
    engine, database_url, add_schedule, missed_fires
):
    """Only a fire that would have run can be missed: one the policy drops is recorded skipped
    with the policy's reason, whenever the sweep gets to it."""
    new_york_since_just_before(add_schedule, missed_fires=missed_fires)
    accounting.sweep(sweep_context(engine, database_url, NY_SECOND + timedelta(hours=1)))
    fires = {f["scheduled_for"]: f for f in list_fires(engine)}
    assert fires[NY_FIRST]["reason"].startswith("missed: 2026-11-01T05:30:00Z passed")
    assert fires[NY_SECOND]["reason"].startswith("dst-policy:Auto: 2026-11-01 01:30 happens twice")
    assert list_runs(engine) == []


def test_a_shifted_fire_leaves_a_stuck_jobs_problem_in_the_status(engine, berlin_gap):
    """A fire the operator launches itself says nothing of whether the schedule's Jobs can
    start again: like a recovered fire, a shifted one keeps the recorded problem."""
    state, ctx, _ = berlin_gap
    problem = "Job nightly-x-29553180 could not deliver the fire of ...: ErrImageNeverPull"
    assert store.set_fire_problem(engine, state.schedule_id, problem)
    entry = dstshift.next_entry(
        get_schedule(engine, state.schedule_id), GAP_END - timedelta(days=3)
    )
    assert dstshift.launch_shifted(ctx, entry, GAP_END + timedelta(seconds=2)) == "launched"
    assert get_schedule(engine, state.schedule_id)["fire_problem"] == problem


def test_a_dropped_occurrence_is_not_launched_late_when_the_policy_changes_under_the_sweep(
    engine, database_url, add_schedule
):
    """The sweep judges a schedule by its row as read when the sweep began, and hands a fire the
    policy drops to the launcher however late (only to be recorded with the policy's reason).
    The launcher judged it by the row as it is at launch: a policy edited meanwhile to one that
    runs each occurrence (here `Kubernetes`) made it start the fire an hour past its deadline,
    which no policy would have run then."""
    state = new_york_since_just_before(add_schedule)
    row = get_schedule(engine, state.schedule_id)  # the sweep's view, read as it began
    with psycopg.connect(database_url, autocommit=True) as edit:
        edit.execute(
            "UPDATE workflow_schedules SET dst_policy = 'Kubernetes' WHERE schedule_id = %s",
            (state.schedule_id,),
        )
    late = NY_SECOND + timedelta(hours=1)
    accounting.account(sweep_context(engine, database_url, late), row, late)
    assert list_runs(engine) == []
    fires = {f["scheduled_for"]: f for f in list_fires(engine)}
    assert fires[NY_SECOND]["outcome"] == "skipped", fires[NY_SECOND]
