"""The launcher's refusals from the database's state (migration 0007), against a real Postgres:
a calendar's excluded date, a missing calendar, the active window and maxFires, decided under
the schedule's row lock (also when deliveries race), recorded as skipped with the reason."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from wfclock.core.calendars import DerivedCalendar
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

from ..conftest import make_state

AT = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Berlin
REGISTRATION = Registration("0 * * * *", "Europe/Berlin")
CALENDAR = DerivedCalendar(
    date(2026, 1, 1), date(2027, 12, 31), {date(2026, 11, 18): "Company Day"}, True, "0.108"
)


@pytest.fixture
def add_schedule(engine):
    """Schedules published a week before the fires these tests deliver."""

    def add(state):
        store.upsert_schedule(engine, state, published_at=AT - timedelta(days=7))
        return state

    return add


def fire(conn, state, at=AT):
    return launch(
        conn, ClockFire(state.schedule_id, at, "job", REGISTRATION), now=datetime.now(UTC)
    )


def runs(conn, state):
    return conn.execute(
        "SELECT count(*) FROM workflow_runs WHERE schedule_id = %s", (state.schedule_id,)
    ).fetchone()[0]


def test_a_fire_on_a_calendars_excluded_date_is_skipped_naming_calendar_and_holiday(
    conn, engine, add_schedule
):
    store.write_calendar(engine, "acme", "company", CALENDAR)
    state = add_schedule(make_state(calendars=["company"]))
    result = fire(conn, state)
    assert (result.outcome, result.reason) == ("skipped", "calendar:company:Company Day")
    assert runs(conn, state) == 0
    again = fire(conn, state)  # a second delivery of a refused fire is a duplicate
    assert again.outcome == "duplicate" and runs(conn, state) == 0
    assert fire(conn, state, AT + timedelta(days=1)).outcome == "launched"


def test_the_date_is_the_schedules_own_zone_and_weekends_go_with_business_days_only(
    conn, engine, add_schedule
):
    store.write_calendar(engine, "acme", "company", CALENDAR)
    state = add_schedule(make_state(calendars=["company"]))
    # 23:00 UTC on Tuesday the 17th is already the 18th in Berlin.
    assert fire(conn, state, AT.replace(day=17, hour=23)).reason == "calendar:company:Company Day"
    saturday = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert fire(conn, state, saturday).reason == "calendar:company:weekend"


def test_a_missing_or_deleted_calendar_refuses_every_fire(conn, engine, add_schedule):
    state = add_schedule(make_state(calendars=["company"]))
    assert fire(conn, state).reason == "calendar:company:missing"
    store.write_calendar(engine, "other", "company", CALENDAR)  # another namespace's
    assert fire(conn, state, AT + timedelta(days=1)).reason == "calendar:company:missing"
    store.write_calendar(engine, "acme", "company", CALENDAR)
    assert fire(conn, state, AT + timedelta(days=1, hours=1)).outcome == "launched"
    store.delete_calendar(engine, "acme", "company")
    assert fire(conn, state, AT + timedelta(days=2)).reason == "calendar:company:missing"


def test_fires_outside_the_active_window_are_skipped(conn, add_schedule):
    state = add_schedule(
        make_state(active_from=AT + timedelta(hours=1), active_until=AT + timedelta(hours=2))
    )
    assert fire(conn, state).reason == "before-active-from"
    assert fire(conn, state, AT + timedelta(hours=1)).outcome == "launched"
    assert fire(conn, state, AT + timedelta(hours=2)).outcome == "launched"  # inclusive
    assert fire(conn, state, AT + timedelta(hours=3)).reason == "after-active-until"
    assert runs(conn, state) == 2


def test_max_fires_counts_launched_fires_and_refuses_the_next(conn, engine, add_schedule):
    state = add_schedule(make_state(max_fires=2))
    outcomes = [fire(conn, state, AT + timedelta(hours=h)) for h in range(3)]
    assert [o.outcome for o in outcomes] == ["launched", "launched", "skipped"]
    assert outcomes[2].reason == "max-fires-reached"
    assert store.clock_launches(engine, state.schedule_id) == 2


def _policy_refusal_calls(conn, state, at) -> int:
    """How many times one fire of `state` at `at` called `wfclock_policy_refusal`, as counted
    by Postgres in the fire's own transaction."""
    conn.execute("SET track_functions = 'pl'")
    conn.commit()
    with conn.transaction():
        fire(conn, state, at)
        (calls,) = conn.execute(
            "SELECT pg_stat_get_xact_function_calls("
            "'wfclock_policy_refusal(uuid, timestamptz)'::regprocedure)"
        ).fetchone()
    return calls or 0


@pytest.mark.parametrize(
    "bound",
    [
        {"active_from": AT - timedelta(days=1)},
        {"active_until": AT + timedelta(days=1)},
        {"max_fires": 5},
        {"calendars": ["company"]},
    ],
    ids=lambda bound: next(iter(bound)),
)
def test_only_a_schedule_with_a_bound_or_a_calendar_is_asked_for_a_policy_refusal(
    conn, engine, add_schedule, bound
):
    """Migration 0011: a schedule none of whose policies can refuse a fire is not asked (the
    call reads the schedule again and sets its own search path); each bound alone still is."""
    store.write_calendar(engine, "acme", "company", CALENDAR)
    plain = add_schedule(make_state())
    bounded = add_schedule(make_state(**bound))
    tomorrow = AT + timedelta(days=1)
    assert _policy_refusal_calls(conn, plain, tomorrow) == 0
    assert _policy_refusal_calls(conn, bounded, tomorrow) == 1
    assert runs(conn, plain) == 1 and runs(conn, bounded) == 1


@pytest.mark.parametrize(
    ("bound", "reason"),
    [
        ({"active_from": AT + timedelta(hours=1)}, "before-active-from"),
        ({"active_until": AT - timedelta(hours=1)}, "after-active-until"),
    ],
)
def test_each_end_of_the_active_window_refuses_on_its_own(conn, add_schedule, bound, reason):
    state = add_schedule(make_state(**bound))
    assert fire(conn, state).reason == reason
    assert runs(conn, state) == 0


def _deliver_at_once(database_url, state, start, hours):
    with psycopg.connect(database_url, autocommit=True) as conn:
        start.wait()
        return fire(conn, state, AT + timedelta(hours=hours)).outcome


def test_max_fires_holds_under_concurrent_deliveries_of_different_fires(database_url, add_schedule):
    """maxFires 1, two fires delivered at once, each twice: exactly one run starts."""
    for _ in range(3):
        state = add_schedule(make_state(max_fires=1))
        start = threading.Barrier(4)
        with ThreadPoolExecutor(4) as pool:
            done = [
                pool.submit(_deliver_at_once, database_url, state, start, hours)
                for hours in (0, 1, 0, 1)
            ]
            outcomes = [d.result(timeout=60) for d in done]
        with psycopg.connect(database_url) as conn:
            assert runs(conn, state) == 1
            reasons = conn.execute(
                "SELECT outcome, reason FROM workflow_schedule_fires WHERE schedule_id = %s",
                (state.schedule_id,),
            ).fetchall()
        assert sorted(reasons) == [("launched", None), ("skipped", "max-fires-reached")]
        assert outcomes.count("launched") == 1


def test_a_tenant_login_reads_no_calendar_and_cannot_ask_for_another_tenants_refusal(
    engine, database_url, add_schedule
):
    from wfclock.controller.tenants import TenantLogins
    from wfclock.settings import Settings

    logins = TenantLogins(engine, Settings(database_url=database_url, tenant_credential_key="k"))
    store.write_calendar(engine, "globex", "secret", CALENDAR)
    globex = add_schedule(make_state(tenant="globex", namespace="globex", calendars=["secret"]))
    with psycopg.connect(logins.url_for("acme"), autocommit=True) as conn:
        for statement, args in [
            ("SELECT * FROM workflow_calendar_dates", ()),
            ("SELECT * FROM workflow_calendars", ()),
            ("SELECT wfclock_policy_refusal(%s, now())", (globex.schedule_id,)),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, args)


def test_status_and_launcher_agree_on_a_calendars_date(conn, engine, add_schedule):
    """The operator's view (calendars_of) is what the launcher decides from."""
    store.write_calendar(engine, "acme", "company", CALENDAR)
    (read,) = store.calendars_of(engine, "acme", ["company", "absent"]).values()
    assert read == CALENDAR
    state = add_schedule(make_state(calendars=["company"], schedule_id=uuid.uuid4()))
    assert fire(conn, state).reason == f"calendar:company:{read.refusal(AT.date())}"


# --- the operator's side: a bounded schedule ends, a calendar re-derives its schedules ----------


@pytest.fixture
def ctx(engine, database_url):
    from wfclock.controller.context import Context
    from wfclock.settings import Settings

    from ..support.fake_kube import FakeKube

    clock = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    return Context(
        Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: clock
    )


def reconcile(ctx, uid, generation=1, **trigger):
    from wfclock.controller import reconciler

    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": "2026-11-11T00:00:00Z",
    }
    body = {
        "tenant": "acme",
        "workflowId": "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11",
        "workflowVersion": 1,
        "trigger": {
            "type": "recurring",
            "cron": "0 * * * *",
            "timezone": "Europe/Berlin",
            **trigger,
        },
    }
    return reconciler.reconcile(ctx, meta, body, {})


def test_a_schedule_that_reached_max_fires_ends_its_cronjob_goes_and_a_raised_bound_revives_it(
    ctx, engine, conn
):
    uid = str(uuid.uuid4())
    status = reconcile(ctx, uid, maxFires=1)
    assert (status["phase"], status["remainingFires"]) == ("Scheduled", 1)
    assert len(ctx.kube.cronjobs) == 1
    state = store.get_schedule(engine, uuid.UUID(uid))
    launched = launch(
        conn, ClockFire(state["schedule_id"], AT, "job", REGISTRATION), now=datetime.now(UTC)
    )
    assert launched.outcome == "launched"
    status = reconcile(ctx, uid, maxFires=1)
    assert status["phase"] == "Ended" and status["remainingFires"] == 0
    assert "maxFires 1 reached" in status["conditions"][0]["message"]
    assert ctx.kube.cronjobs == {}
    assert [e[1] for e in ctx.kube.events][-1] == "Ended"
    row = store.get_schedule(engine, uuid.UUID(uid))
    assert row["status"] == "completed" and row["last_fire_key"] == launched.key  # history kept
    status = reconcile(ctx, uid, 2, maxFires=3)
    assert (status["phase"], status["remainingFires"]) == ("Scheduled", 2)
    assert len(ctx.kube.cronjobs) == 1


def test_a_schedule_with_a_missing_calendar_says_so_and_shows_no_fires(ctx, engine):
    uid = str(uuid.uuid4())
    status = reconcile(ctx, uid, calendars=["company"])
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "CalendarMissing")
    assert "fail closed" in ready["message"] and status["nextFires"] == []
    store.write_calendar(engine, "acme", "company", CALENDAR)
    status = reconcile(ctx, uid, calendars=["company"])
    assert status["conditions"][0]["status"] == "True"
    # The clock says 12:00 UTC on Company Day: its remaining fires are excluded, the next day's run.
    assert status["excludedFires"][0]["reason"] == "calendar:company:Company Day"
    assert status["nextFires"][0]["local"] == "2026-11-19T00:00:00+01:00"
