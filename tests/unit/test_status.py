"""The status a schedule shows, computed against fixed dates (DST days included)."""

from datetime import UTC, datetime, timedelta

from wfclock.core.status import condition, invalid_status, status_for

from ._schedules import schedule, state_row


def status_at(now, trigger, **row):
    s = schedule(trigger, now)
    cron = s.spec.trigger.spec if s.recurring else None
    return status_for(state_row(s, **row), cron, 1, [], now)


BERLIN_0230 = {"type": "recurring", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}
NEW_YORK_0130 = {"type": "recurring", "cron": "30 1 * * *", "timezone": "America/New_York"}


def test_status_shows_the_skipped_0230_on_berlins_spring_forward_day():
    status = status_at(
        datetime(2027, 3, 27, 12, tzinfo=UTC), {**BERLIN_0230, "dstPolicy": "Kubernetes"}
    )
    fires = status["nextFires"]
    assert fires[0]["local"] == "2027-03-29T02:30:00+02:00"
    assert "2027-03-28 02:30 does not exist" in fires[0]["note"]
    assert status["nextFireAt"] == "2027-03-29T00:30:00Z"


def test_status_shows_both_0130_fires_on_new_yorks_fall_back_day():
    status = status_at(
        datetime(2026, 10, 31, 12, tzinfo=UTC), {**NEW_YORK_0130, "dstPolicy": "Kubernetes"}
    )
    first, second, third = status["nextFires"][:3]
    assert (first["at"], first["local"]) == ("2026-11-01T05:30:00Z", "2026-11-01T01:30:00-04:00")
    assert (second["at"], second["local"]) == ("2026-11-01T06:30:00Z", "2026-11-01T01:30:00-05:00")
    assert "doubled" in first["note"] and "doubled" in second["note"] and "note" not in third


def test_status_shows_berlins_0230_run_at_three_on_spring_forward_day_by_default():
    status = status_at(datetime(2027, 3, 27, 12, tzinfo=UTC), BERLIN_0230)
    first, second = status["nextFires"][:2]
    assert (first["at"], first["local"]) == ("2027-03-28T01:00:00Z", "2027-03-28T03:00:00+02:00")
    assert "runs after a DST gap (dstPolicy Auto)" in first["note"]
    assert second["local"] == "2027-03-29T02:30:00+02:00" and "note" not in second


def test_status_shows_new_yorks_0130_once_on_fall_back_day_by_default():
    status = status_at(datetime(2026, 10, 31, 12, tzinfo=UTC), NEW_YORK_0130)
    first, second = status["nextFires"][:2]
    assert first["at"] == "2026-11-01T05:30:00Z" and "first occurrence only" in first["note"]
    assert second["local"] == "2026-11-02T01:30:00-05:00"


def test_status_lists_only_last_days_for_l():
    trigger = {"type": "recurring", "cron": "0 18 L * *", "timezone": "UTC"}
    status = status_at(datetime(2027, 1, 30, tzinfo=UTC), trigger)
    assert [f["at"][:10] for f in status["nextFires"][:3]] == [
        "2027-01-31",
        "2027-02-28",
        "2027-03-31",
    ]


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


# --- pause reason, recent fires, the failing streak ------------------------------------------

import uuid  # noqa: E402

from wfclock.core.status import FireHistory  # noqa: E402

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "Europe/Berlin"}
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def fire(hours_ago, outcome="launched", run_status="queued", reason=None, kind="clock"):
    at = T0 - timedelta(hours=hours_ago)
    run = uuid.uuid4() if outcome == "launched" else None
    return {
        "scheduled_for": at,
        "first_delivered_at": at + timedelta(seconds=2),
        "outcome": outcome,
        "reason": reason,
        "run_id": run,
        "kind": kind,
        "run_status": run_status if run else None,
        "run_created_at": at + timedelta(seconds=3) if run else None,
    }


def status_with(history, **row):
    s = schedule(HOURLY, T0)
    return status_for(state_row(s, **row), s.spec.trigger.spec, 1, [], T0, history, 5)


def fires_healthy(status):
    return next(c for c in status["conditions"] if c["type"] == "FiresHealthy")


def test_a_paused_schedule_shows_its_reason_in_the_status_and_the_ready_message():
    status = status_with(None, status="paused", pause_reason="quarter-end freeze")
    assert status["phase"] == "Paused" and status["pauseReason"] == "quarter-end freeze"
    assert status["conditions"][0]["message"].endswith("is suspended: quarter-end freeze")


def test_a_resumed_schedule_shows_no_pause_reason():
    assert status_with(None, pause_reason="old")["pauseReason"] is None


def test_recent_fires_put_the_scheduled_instant_beside_the_start_newest_first():
    launched = fire(0, run_status="succeeded")
    missed = fire(1, outcome="skipped", reason="missed: 13:00 passed 400s ago")
    overlap = fire(2, outcome="skipped", reason="overlap: run x is still running")
    history = FireHistory([launched, missed, overlap], T0, overlap)
    recent = status_with(history)["recentFires"]
    assert recent[0] == {
        "scheduledFor": "2026-11-25T12:00:00Z",
        "startedAt": "2026-11-25T12:00:03Z",
        "kind": "clock",
        "outcome": "launched",
        "runId": str(launched["run_id"]),
        "runStatus": "succeeded",
    }
    assert [f["outcome"] for f in recent] == ["launched", "missed", "skipped"]
    assert recent[2]["startedAt"] == "2026-11-25T10:00:02Z"  # no run: when it was recorded


def test_recent_fires_are_limited_to_the_number_shown():
    history = FireHistory([fire(h) for h in range(8)])
    s = schedule(HOURLY, T0)
    status = status_for(state_row(s), s.spec.trigger.spec, 1, [], T0, history, 2)
    assert len(status["recentFires"]) == 2


def test_last_success_and_last_skipped_fire_are_shown():
    skipped = fire(3, outcome="skipped", reason="overlap: run x is still running")
    status = status_with(FireHistory([], T0 - timedelta(hours=1), skipped))
    assert status["lastSuccessfulFireAt"] == "2026-11-25T11:00:00Z"
    assert status["lastSkippedFire"] == {
        "scheduledFor": "2026-11-25T09:00:00Z",
        "outcome": "skipped",
        "reason": "overlap: run x is still running",
    }


def test_three_failed_fires_in_a_row_make_fires_healthy_false_with_reason_fires_failing():
    history = FireHistory(
        [
            fire(0, run_status="failed"),
            fire(1, outcome="skipped", reason="missed: beyond the deadline"),
            fire(2, run_status="TIMED_OUT"),
            fire(3, run_status="succeeded"),
        ]
    )
    condition = fires_healthy(status_with(history))
    assert (condition["status"], condition["reason"]) == ("False", "FiresFailing")
    assert "the last 3 fires all failed" in condition["message"]
    assert "2026-11-25T11:00:00Z missed" in condition["message"]


def test_a_success_overlap_skip_or_cancelled_run_breaks_the_failing_streak():
    for breaker in (
        fire(1, run_status="succeeded"),
        fire(1, run_status="cancelled"),
        fire(1, outcome="skipped", reason="overlap: run x is still running"),
        fire(1, run_status="running"),
    ):
        history = FireHistory([fire(0, run_status="failed"), breaker, fire(2, run_status="failed")])
        assert fires_healthy(status_with(history))["status"] == "True", breaker


def test_manual_runs_do_not_count_in_the_failing_streak():
    history = FireHistory(
        [
            fire(0, run_status="failed"),
            fire(0.5, run_status="failed", kind="manual"),
            fire(1, run_status="failed"),
        ]
    )
    assert fires_healthy(status_with(history))["status"] == "True"
