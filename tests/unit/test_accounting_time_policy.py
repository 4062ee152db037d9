"""What the accounting sweep owes and decides around a daylight-saving change and under `L`
(`core.accounting`): the fires a time policy drops are recorded with its reason (through the
launcher) and never missed or superseding; a shifted fire is owed once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from wfclock.core.accounting import owed_fires, plan_accounting

# Berlin, 2026-03-29: 02:00-03:00 does not exist; its first instant after the gap is 01:00Z.
GAP_END = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def row(cron, timezone, since, policy="Auto", **overrides):
    base = {
        "schedule_id": uuid.uuid4(),
        "trigger_type": "recurring",
        "cron": cron,
        "timezone": timezone,
        "dst_policy": policy,
        "run_at": None,
        "accounted_until": since,
        "trigger_effective_from": since,
        "quiet": [],
        "missed_fires": "latest",
        "starting_deadline_seconds": 300,
        "catch_up_window_seconds": 3600,
        "jitter_seconds": 0,
    }
    return {**base, **overrides}


def test_a_shifted_fire_that_is_also_a_cronjob_fire_is_owed_once():
    """`0 2,3 * * *`: 02:00 moves to 03:00, which the CronJob fires anyway; `0,30 2 * * *`: both
    missing wall times run once at 03:00."""
    for cron in ("0 2,3 * * *", "0,30 2 * * *"):
        owed = owed_fires(
            row(cron, "Europe/Berlin", GAP_END - timedelta(hours=2)),
            GAP_END + timedelta(hours=1, minutes=30),
        )
        assert owed.count(GAP_END) == 1, (cron, owed)


def test_under_latest_the_shifted_fire_supersedes_the_fire_before_it():
    """The shifted fire runs: it is the later fire that supersedes an unrecorded earlier one."""
    before = GAP_END - timedelta(days=1, minutes=-30)  # 2026-03-28 02:30 in Berlin
    schedule = row("30 2 * * *", "Europe/Berlin", before - timedelta(minutes=1))
    plan = plan_accounting(schedule, set(), GAP_END + timedelta(minutes=2))
    assert plan.launch == [GAP_END]
    assert [fire for fire, _ in plan.missed] == [before]
    assert "2026-03-29T01:00:00Z" in plan.missed[0][1]


def test_the_days_before_the_last_are_refused_not_missed_and_supersede_nothing():
    """`L` in April: the CronJob fires on the 28th, 29th and 30th; an outage over all three
    leaves the 30th the latest fire (launched), and the 28th and 29th to the launcher, which
    records them `not-last-day-of-month`."""
    days = [datetime(2026, 4, day, 18, 0, tzinfo=UTC) for day in (28, 29, 30)]
    schedule = row(
        "0 18 L * *", "UTC", days[0] - timedelta(hours=1), starting_deadline_seconds=3 * 86400
    )
    plan = plan_accounting(schedule, set(), days[-1] + timedelta(minutes=2))
    assert sorted(plan.launch) == days and plan.missed == []
    beyond = plan_accounting(
        {**schedule, "starting_deadline_seconds": 60}, set(), days[-1] + timedelta(hours=1)
    )
    assert sorted(beyond.launch) == days[:2]
    assert [fire for fire, _ in beyond.missed] == days[2:]
