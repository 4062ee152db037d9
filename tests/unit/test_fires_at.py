"""Whether a schedule's current trigger owes a fire at an instant (`core.accounting.fires_at`):
what decides, when a trigger changed while a fire of the old one waited, whether it still runs."""

from __future__ import annotations

from datetime import UTC, datetime

from wfclock.core.accounting import fires_at


def recurring(cron: str, timezone: str = "UTC", dst_policy: str | None = None) -> dict:
    return {
        "trigger_type": "recurring",
        "cron": cron,
        "timezone": timezone,
        "run_at": None,
        "dst_policy": dst_policy,
    }


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_recurring_trigger_owes_its_own_instants_only():
    assert fires_at(recurring("0 * * * *"), utc(2026, 11, 25, 13))
    assert not fires_at(recurring("30 * * * *"), utc(2026, 11, 25, 13))
    # London is on UTC in November: a zone edit that keeps the instant still owes it.
    assert fires_at(recurring("0 * * * *", "Europe/London"), utc(2026, 11, 25, 13))
    assert not fires_at(recurring("0 * * * *", "Asia/Kolkata"), utc(2026, 11, 25, 13))


def test_a_one_time_trigger_owes_its_run_at_only():
    once = {
        "trigger_type": "schedule",
        "run_at": utc(2026, 11, 25, 15),
        "cron": None,
        "timezone": "UTC",
    }
    assert fires_at(once, utc(2026, 11, 25, 15))
    assert not fires_at(once, utc(2026, 11, 25, 13))


def test_the_daylight_saving_policy_decides_a_repeated_and_a_missing_local_time():
    daily = recurring("30 2 * * *", "Europe/Berlin", "Auto")  # fixed time: runs once, shifts
    # 02:30 happens twice on 2026-10-25 (00:30 and 01:30 UTC): only the first is owed.
    assert fires_at(daily, utc(2026, 10, 25, 0, 30))
    assert not fires_at(daily, utc(2026, 10, 25, 1, 30))
    assert fires_at({**daily, "dst_policy": "RunEachShiftMissing"}, utc(2026, 10, 25, 1, 30))
    # 02:30 does not exist on 2026-03-29: it runs at the end of the gap, 03:00 (01:00 UTC).
    assert fires_at(daily, utc(2026, 3, 29, 1))
    assert not fires_at({**daily, "dst_policy": "RunOnceSkipMissing"}, utc(2026, 3, 29, 1))
