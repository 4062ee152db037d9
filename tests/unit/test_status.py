"""The status a schedule shows, computed against fixed dates (DST days included)."""

from datetime import UTC, datetime, timedelta

from wfclock.core.status import condition, invalid_status, status_for

from ._schedules import schedule, state_row


def status_at(now, trigger, **row):
    s = schedule(trigger, now)
    cron = s.spec.trigger.spec if s.recurring else None
    return status_for(state_row(s, **row), cron, 1, [], now)


def test_status_shows_the_skipped_0230_on_berlins_spring_forward_day():
    status = status_at(
        datetime(2027, 3, 27, 12, tzinfo=UTC),
        {"type": "recurring", "cron": "30 2 * * *", "timezone": "Europe/Berlin"},
    )
    fires = status["nextFires"]
    assert fires[0]["local"] == "2027-03-29T02:30:00+02:00"
    assert "2027-03-28 02:30 does not exist" in fires[0]["note"]
    assert status["nextFireAt"] == "2027-03-29T00:30:00Z"


def test_status_shows_both_0130_fires_on_new_yorks_fall_back_day():
    status = status_at(
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        {"type": "recurring", "cron": "30 1 * * *", "timezone": "America/New_York"},
    )
    first, second, third = status["nextFires"][:3]
    assert (first["at"], first["local"]) == ("2026-11-01T05:30:00Z", "2026-11-01T01:30:00-04:00")
    assert (second["at"], second["local"]) == ("2026-11-01T06:30:00Z", "2026-11-01T01:30:00-05:00")
    assert "doubled" in first["note"] and "doubled" in second["note"] and "note" not in third


def test_a_missed_one_time_schedule_is_not_ready_and_says_why():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    trigger = {"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}
    status = status_at(
        now, trigger, status="failed", last_run_status="missed", last_error="too late"
    )
    assert status["phase"] == "Missed" and status["nextFires"] == []
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Missed", "too late")


def test_condition_keeps_its_transition_time_while_the_status_holds():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = condition("Ready", True, "Registered", "ok", 1, [], t0)
    same = condition("Ready", True, "Registered", "ok", 2, [first], t0 + timedelta(hours=1))
    flipped = condition("Ready", False, "Missed", "late", 3, [same], t0 + timedelta(hours=2))
    assert same["lastTransitionTime"] == first["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert flipped["lastTransitionTime"] == "2026-01-01T02:00:00Z"


def test_invalid_status_registers_nothing_and_names_the_reason():
    status = invalid_status("TooFrequent", "spec.trigger.cron: ...", 4, [], datetime.now(UTC))
    assert status["phase"] == "Invalid" and status["nextFireAt"] is None
    assert status["conditions"][0]["reason"] == "TooFrequent"
    assert status["conditions"][0]["observedGeneration"] == 4
