"""The one launcher: exactly one run per fire, whatever is delivered twice."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import psycopg
import pytest
import wfclock
from wfclock.core.fires import fire_key_for
from wfclock.core.model import WorkflowClockTriggerV1
from wfclock.db.store import get_schedule, list_fires, list_runs, mark_deleted, update_schedule
from wfclock.launcher import (
    ClockFire,
    EventStart,
    FireNotDue,
    InvalidStart,
    ManualStart,
    NotAFire,
    Registration,
    UnknownSchedule,
    launch,
)

from ..conftest import NOW, make_state, one_time_state

SCHEMA = json.loads(
    (Path(wfclock.__file__).parent / "schemas/payload.WorkflowClockTrigger.v1.json").read_text()
)
HOUR = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # 12:00 in Berlin: a fire of "0 * * * *"


def fire(conn, schedule_id, at, *, now=NOW, source="job"):
    return launch(conn, ClockFire(schedule_id, at, source), now=now)


def assert_valid_clock_payload(payload):
    jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())
    WorkflowClockTriggerV1.model_validate(payload)


def test_one_time_fire_starts_one_run_and_completes_the_schedule(conn, engine, add_schedule):
    run_at = NOW - timedelta(seconds=5)
    state = add_schedule(one_time_state(run_at))
    results = [fire(conn, state.schedule_id, run_at) for _ in range(3)]
    assert [r.outcome for r in results] == ["launched", "duplicate", "duplicate"]
    assert len({r.run_id for r in results}) == 1
    runs = list_runs(engine)
    assert len(runs) == 1 and runs[0]["trigger_type"] == "schedule"
    assert runs[0]["trigger_fire_key"] == fire_key_for(state.schedule_id, run_at)
    assert get_schedule(engine, state.schedule_id)["status"] == "completed"
    assert list_fires(engine)[0]["attempts"] == 3
    # A much later delivery still launches nothing.
    late = fire(conn, state.schedule_id, run_at, now=NOW + timedelta(days=2))
    assert late.outcome == "duplicate" and len(list_runs(engine)) == 1


def test_completed_one_time_schedule_never_launches_again_even_for_a_new_key(
    conn, engine, add_schedule
):
    run_at = NOW - timedelta(seconds=5)
    state = add_schedule(one_time_state(run_at))
    fire(conn, state.schedule_id, run_at)
    other = fire(conn, state.schedule_id, run_at + timedelta(minutes=1))
    assert other.outcome == "skipped" and other.reason == "completed"
    assert len(list_runs(engine)) == 1


def test_recurring_deliveries_fire1_fire1_fire2_give_two_runs(conn, engine, add_schedule):
    state = add_schedule()
    outcomes = [
        fire(conn, state.schedule_id, at).outcome for at in (HOUR, HOUR, HOUR + timedelta(hours=1))
    ]
    assert outcomes == ["launched", "duplicate", "launched"]
    runs = list_runs(engine, trigger_type="recurring")
    assert len(runs) == 2
    row = get_schedule(engine, state.schedule_id)
    assert row["status"] == "scheduled" and row["last_fire_at"] == HOUR + timedelta(hours=1)
    assert row["next_fire_at"] == NOW + timedelta(hours=1)  # the first fire after now


def test_clock_payloads_validate_against_the_shipped_schema(conn, engine, add_schedule):
    recurring = add_schedule()
    one_time = add_schedule(one_time_state(NOW - timedelta(minutes=1), name="once"))
    late = NOW + timedelta(minutes=7)  # the launcher ran minutes late
    fire(conn, recurring.schedule_id, HOUR, now=late)
    fire(conn, one_time.schedule_id, NOW - timedelta(minutes=1), now=late)
    payloads = {r["trigger_type"]: r["payload"] for r in list_runs(engine)}
    for payload in payloads.values():
        assert_valid_clock_payload(payload)
        assert payload["firedAt"] == "2026-11-25T12:07:00Z"
    assert payloads["recurring"]["scheduledFor"] == "2026-11-25T11:00:00Z"
    assert payloads["recurring"]["cron"] == "0 * * * *"
    assert payloads["schedule"]["scheduledFor"] == "2026-11-25T11:59:00Z"
    assert "cron" not in payloads["schedule"]
    assert all(
        r["payload_schema_ref"] == "payload.WorkflowClockTrigger.v1" for r in list_runs(engine)
    )


def test_shipped_schema_refuses_payloads_with_foreign_fields():
    payload = {
        "triggerType": "recurring",
        "scheduleId": str(uuid.uuid4()),
        "scheduledFor": "2026-03-08T14:00:00Z",
        "firedAt": "2026-03-08T14:00:01.250Z",
        "timezone": "America/New_York",
        "workflowId": str(uuid.uuid4()),
        "workflowVersion": 3,
        "cron": "0 14 * * *",
    }
    assert_valid_clock_payload(payload)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**payload, "injected": "x"}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in payload.items() if k != "cron"}, SCHEMA)


def test_32_concurrent_deliveries_of_one_fire_start_exactly_one_run(
    database_url, engine, add_schedule
):
    state = add_schedule()

    def deliver(_):
        with psycopg.connect(database_url) as connection:
            return fire(connection, state.schedule_id, HOUR).outcome

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(deliver, range(32)))
    assert outcomes.count("launched") == 1 and outcomes.count("duplicate") == 31
    assert len(list_runs(engine)) == 1
    assert list_fires(engine)[0]["attempts"] == 32


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"status": "paused"}, "paused"),
        ({"enabled": False, "status": "disabled"}, "disabled"),
    ],
)
def test_fire_for_a_stopped_schedule_is_skipped(conn, engine, add_schedule, change, reason):
    state = add_schedule()
    update_schedule(engine, state.schedule_id, **change)
    result = fire(conn, state.schedule_id, HOUR)
    assert (result.outcome, result.reason) == ("skipped", reason)
    assert list_runs(engine) == []
    ledger = list_fires(engine)
    assert ledger[0]["outcome"] == "skipped" and ledger[0]["reason"] == reason


def test_fire_for_a_deleted_schedule_is_skipped(conn, engine, add_schedule):
    state = add_schedule()
    mark_deleted(engine, state.schedule_id)
    assert fire(conn, state.schedule_id, HOUR).reason == "deleted"
    assert list_runs(engine) == []


def test_fire_of_a_superseded_one_time_schedule_is_skipped(conn, engine, add_schedule):
    old = NOW - timedelta(minutes=1)
    state = add_schedule(one_time_state(NOW + timedelta(hours=1)))
    result = fire(conn, state.schedule_id, old)
    assert result.outcome == "skipped" and result.reason.startswith("superseded")
    assert list_runs(engine) == []


def test_an_instant_the_cron_does_not_fire_at_is_refused_without_spending_its_key(
    conn, engine, add_schedule
):
    state = add_schedule(make_state(cron="30 * * * *"))
    with pytest.raises(NotAFire, match="does not fire at"):
        fire(conn, state.schedule_id, HOUR)
    assert list_fires(engine) == [] and list_runs(engine) == []


def test_a_cronjob_fire_our_time_zone_data_disagrees_with_still_launches_once(
    conn, engine, add_schedule
):
    """The CronJob controller made the Job for the current cron and zone: its time-zone data is
    the authority. Ours (here: the instant is not a fire by our maths) must not spend the key."""
    state = add_schedule(make_state(cron="30 * * * *"))
    registration = Registration("30 * * * *", "Europe/Berlin")
    request = ClockFire(state.schedule_id, HOUR, "nightly-abc-29393040", registration)
    conn.autocommit = True
    first, again = launch(conn, request, now=NOW), launch(conn, request, now=NOW)
    assert (first.outcome, again.outcome) == ("launched", "duplicate")
    (run,) = list_runs(engine)
    assert "time-zone data" in run["trigger_metadata"]["note"]


def test_fire_planned_before_the_trigger_changed_is_skipped(conn, engine, add_schedule):
    state = add_schedule(effective_from=HOUR + timedelta(minutes=30))
    result = fire(conn, state.schedule_id, HOUR)
    assert result.outcome == "skipped" and "last change" in result.reason


def test_fire_before_its_time_writes_nothing_so_the_real_fire_still_launches(
    conn, engine, add_schedule
):
    state = add_schedule()
    with pytest.raises(FireNotDue):
        fire(conn, state.schedule_id, HOUR + timedelta(hours=2), now=HOUR)
    assert list_fires(engine) == []
    assert (
        fire(
            conn, state.schedule_id, HOUR + timedelta(hours=2), now=HOUR + timedelta(hours=2)
        ).outcome
        == "launched"
    )


def test_unknown_schedule_writes_nothing(conn, engine):
    with pytest.raises(UnknownSchedule):
        fire(conn, uuid.uuid4(), HOUR)
    assert list_fires(engine) == [] and list_runs(engine) == []


def test_event_start_goes_through_the_launcher_and_dedupes_on_event_id(conn, engine):
    start = EventStart("acme", uuid.uuid4(), 2, "ticket.created", "evt-42", {"ticket": 42})
    first, second = launch(conn, start, now=NOW), launch(conn, start, now=NOW)
    assert (first.outcome, second.outcome) == ("launched", "duplicate")
    assert first.run_id == second.run_id
    (run,) = list_runs(engine)
    assert run["trigger_type"] == "event" and run["payload"] == {"ticket": 42}
    assert run["trigger_metadata"]["eventName"] == "ticket.created"


def test_manual_starts_each_create_a_run(conn, engine):
    workflow = uuid.uuid4()
    for _ in range(2):
        assert launch(conn, ManualStart("acme", workflow, 1), now=NOW).outcome == "launched"
    assert [r["trigger_type"] for r in list_runs(engine)] == ["manual", "manual"]


def test_an_event_of_one_tenant_never_dedupes_against_another_tenants(conn, engine):
    workflow = uuid.uuid4()
    acme = EventStart("acme", workflow, 1, "order", f"{workflow}:e1", {})
    assert launch(conn, acme, now=NOW).outcome == "launched"
    # Spelled to produce acme's key under the old `tenant:workflow:event` format.
    forged = EventStart(f"acme:{workflow}", workflow, 1, "order", "e1", {})
    with pytest.raises(InvalidStart, match="tenant"):
        launch(conn, forged, now=NOW)
    globex = EventStart("globex", workflow, 1, "order", f"{workflow}:e1", {})
    assert launch(conn, globex, now=NOW).outcome == "launched"
    assert len(list_runs(engine)) == 2


def test_workers_are_notified_of_new_runs(database_url, conn, add_schedule):
    state = add_schedule()
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN wfclock_runs")
        result = fire(conn, state.schedule_id, HOUR)
        notice = next(listener.notifies(timeout=5, stop_after=1))
    assert json.loads(notice.payload)["runId"] == str(result.run_id)
