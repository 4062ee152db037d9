"""Which fires a registration owed before it moved on (`core.accounting.owed_before`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from wfclock.core.accounting import owed_before

T = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)


def row(**overrides):
    base = {
        "trigger_type": "recurring",
        "cron": "*/5 * * * *",
        "timezone": "UTC",
        "run_at": None,
        "accounted_until": T,
        "trigger_effective_from": T,
        "quiet": [],
    }
    return {**base, **overrides}


def minutes(*ms):
    return [T + timedelta(minutes=m) for m in ms]


def test_the_fires_from_the_publish_time_to_the_change_excluded():
    # 11:30 (the publish instant itself) ... 11:55; the change at 12:00 owes none from then.
    assert owed_before(row(), T + timedelta(minutes=30)) == minutes(0, 5, 10, 15, 20, 25)


def test_from_the_accounted_watermark_on():
    assert owed_before(
        row(accounted_until=T + timedelta(minutes=20)), T + timedelta(minutes=30)
    ) == minutes(25)


def test_an_open_pause_ends_what_is_owed_and_a_closed_one_does_not():
    opened = SimpleNamespace(lower=T + timedelta(minutes=12), upper=None)
    closed = SimpleNamespace(lower=T + timedelta(minutes=1), upper=T + timedelta(minutes=2))
    assert owed_before(row(quiet=[closed, opened]), T + timedelta(minutes=30)) == minutes(0, 5, 10)


def test_nothing_before_the_pruned_horizon_and_nothing_for_a_one_time_schedule():
    pruned = T + timedelta(minutes=15)
    assert owed_before(row(), T + timedelta(minutes=30), pruned) == minutes(15, 20, 25)
    one_time = row(trigger_type="schedule", cron=None, run_at=T + timedelta(minutes=5))
    assert owed_before(one_time, T + timedelta(minutes=30)) == []
