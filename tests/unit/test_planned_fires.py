"""`planned_fires_between`: the fires of a window (the console's timeline) as the operator's
`status.nextFires` and the launcher decide them: daylight-saving policy, calendars and bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime

from wfclock.core.calendars import derive_calendar, fire_refusal, validate_calendar
from wfclock.core.firetime import parse_cron
from wfclock.core.nextfires import next_fires_under_policy, planned_fires_between

BERLIN = "Europe/Berlin"
AT_0230 = parse_cron("30 2 * * *")
# Europe's spring-forward is Sunday 2026-03-29 (02:00 -> 03:00), fall-back 2026-10-25.
BEFORE_SPRING = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)
SPRING_WEEK_END = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def offsite(day: str = "2026-03-27"):
    calendar = derive_calendar(
        validate_calendar({"dates": [{"date": day, "name": "Company offsite"}]}), date(2026, 3, 1)
    )
    return lambda fire: fire_refusal(["office"], {"office": calendar}, BERLIN, fire)


def runs(listed: list[dict]) -> list[str]:
    return [f["at"] for f in listed if "refused" not in f]


def test_a_week_with_a_gap_and_an_excluded_day_lists_the_shifted_fire_and_the_refused_one():
    listed = planned_fires_between(
        AT_0230, BERLIN, BEFORE_SPRING, SPRING_WEEK_END, offsite(), dst_policy="RunOnceShiftMissing"
    )
    assert [(f["at"], f.get("refused"), f.get("shifted", False)) for f in listed] == [
        ("2026-03-26T01:30:00Z", None, False),
        ("2026-03-27T01:30:00Z", "calendar:office:Company offsite", False),
        ("2026-03-28T01:30:00Z", None, False),
        ("2026-03-29T01:00:00Z", None, True),  # 02:30 does not exist: runs at 03:00 CEST
        ("2026-03-30T00:30:00Z", None, False),
        ("2026-03-31T00:30:00Z", None, False),
        ("2026-04-01T00:30:00Z", None, False),
    ]
    assert "runs after a DST gap (dstPolicy RunOnceShiftMissing)" in listed[3]["note"]


def test_the_window_form_runs_exactly_the_fires_the_status_shows():
    refusal = offsite()
    for policy in ("Auto", "Kubernetes", "RunOnceSkipMissing", "RunEachShiftMissing"):
        listed = planned_fires_between(
            AT_0230, BERLIN, BEFORE_SPRING, SPRING_WEEK_END, refusal, dst_policy=policy
        )
        shown, excluded = next_fires_under_policy(
            AT_0230, BERLIN, BEFORE_SPRING, len(runs(listed)), refusal, dst_policy=policy
        )
        assert runs(listed) == [f["at"] for f in shown], policy
        assert [(f["at"], f["reason"]) for f in excluded] == [
            (f["at"], f["refused"]) for f in listed if "refused" in f
        ], policy


def test_a_policy_that_skips_the_gap_shows_no_run_for_it():
    listed = planned_fires_between(
        AT_0230, BERLIN, BEFORE_SPRING, SPRING_WEEK_END, lambda f: None, dst_policy="Kubernetes"
    )
    assert "2026-03-29" not in " ".join(runs(listed))
    assert len(runs(listed)) == 6


def test_a_repeated_hour_runs_once_or_twice_as_the_policy_says():
    begin, end = datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 25, 12, tzinfo=UTC)
    once = planned_fires_between(AT_0230, BERLIN, begin, end, lambda f: None, dst_policy="Auto")
    each = planned_fires_between(
        AT_0230, BERLIN, begin, end, lambda f: None, dst_policy="RunEachShiftMissing"
    )
    assert runs(once) == ["2026-10-25T00:30:00Z"]  # 02:30 CEST, the first of the two
    assert "first occurrence only" in once[0]["note"]
    assert runs(each) == ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"]


def test_bounds_refuse_fires_before_active_from_and_list_none_after_until_or_max_fires():
    daily = parse_cron("0 9 * * *")
    begin, end = datetime(2026, 11, 26, 12, tzinfo=UTC), datetime(2026, 12, 6, 12, tzinfo=UTC)
    listed = planned_fires_between(
        daily,
        "UTC",
        begin,
        end,
        lambda f: None,
        active_from=datetime(2026, 11, 28, 9, tzinfo=UTC),
        active_until=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    assert [(f["at"], f.get("refused")) for f in listed] == [
        ("2026-11-27T09:00:00Z", "before-active-from"),
        ("2026-11-28T09:00:00Z", None),  # activeFrom and activeUntil are inside the window
        ("2026-11-29T09:00:00Z", None),
        ("2026-11-30T09:00:00Z", None),
        ("2026-12-01T09:00:00Z", None),
    ]
    two_left = planned_fires_between(daily, "UTC", begin, end, lambda f: None, remaining=2)
    assert runs(two_left) == ["2026-11-27T09:00:00Z", "2026-11-28T09:00:00Z"]
    assert planned_fires_between(daily, "UTC", begin, end, lambda f: None, remaining=0) == []
    every_minute = planned_fires_between(
        parse_cron("* * * * *"), "UTC", begin, end, lambda f: None, limit=3
    )
    assert runs(every_minute) == [
        "2026-11-26T12:01:00Z",
        "2026-11-26T12:02:00Z",
        "2026-11-26T12:03:00Z",
    ]
