"""Fire-time maths against fixed dates (the Go parity property test is separate)."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.core.fires import utc_iso
from wfclock.core.firetime import is_fire_instant, minimum_gap, next_fire_times, parse_cron
from wfclock.core.nextfires import next_fires_view


def fires(cron, zone, start, n=3):
    return [utc_iso(f) for f in next_fire_times(parse_cron(cron), zone, start, n)]


def test_weekday_morning_in_new_york_is_a_utc_instant_that_follows_dst():
    start = datetime(2026, 10, 30, tzinfo=UTC)  # a Friday; DST ends Sunday 1 Nov
    assert fires("15 9 * * 1-5", "America/New_York", start) == [
        "2026-10-30T13:15:00Z",
        "2026-11-02T14:15:00Z",
        "2026-11-03T14:15:00Z",
    ]


def test_0230_berlin_on_spring_forward_day_is_skipped_as_the_cronjob_controller_does():
    start = datetime(2026, 3, 28, 12, tzinfo=UTC)
    # 02:30 does not exist on 29 March; robfig/cron (and so the CronJob controller) makes no
    # fire for that day. The status says so instead of pretending a run will happen.
    assert fires("30 2 * * *", "Europe/Berlin", start) == [
        "2026-03-30T00:30:00Z",
        "2026-03-31T00:30:00Z",
        "2026-04-01T00:30:00Z",
    ]
    view = next_fires_view(parse_cron("30 2 * * *"), "Europe/Berlin", start, 2)
    assert view[0]["local"] == "2026-03-30T02:30:00+02:00"
    assert "2026-03-29 02:30 does not exist" in view[0]["note"]
    assert "note" not in view[1]


def test_0130_new_york_on_fall_back_day_fires_in_both_repeated_hours():
    start = datetime(2026, 10, 31, 12, tzinfo=UTC)
    assert fires("30 1 * * *", "America/New_York", start) == [
        "2026-11-01T05:30:00Z",  # 01:30 EDT
        "2026-11-01T06:30:00Z",  # 01:30 EST, the repeated hour: the CronJob controller fires again
        "2026-11-02T06:30:00Z",
    ]
    view = next_fires_view(parse_cron("30 1 * * *"), "America/New_York", start, 3)
    assert view[0]["local"] == "2026-11-01T01:30:00-04:00" and "first of two" in view[0]["note"]
    assert view[1]["local"] == "2026-11-01T01:30:00-05:00" and "second of two" in view[1]["note"]
    assert "note" not in view[2]


def test_lord_howe_half_hour_shift():
    start = datetime(2026, 4, 4, 12, tzinfo=UTC)  # DST ends 5 Apr 02:00 -> 01:30
    got = fires("45 1 * * *", "Australia/Lord_Howe", start, 3)
    # 01:45 at +11 (14:45Z), again at +10:30 in the repeated half hour, then daily at +10:30.
    assert got == ["2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "2026-04-05T15:15:00Z"]


@pytest.mark.parametrize(
    "cron, zone, gap",
    [
        ("0-4 * * * *", "UTC", 1),
        ("*/5 * * * *", "UTC", 5),
        ("0 9 * * *", "UTC", 1440),
        ("0 0 1 * *", "UTC", 1440),
        ("0,59 23,0 * * *", "UTC", 1),
        ("30 1 * * *", "America/New_York", 60),  # doubled by the repeated hour
        ("0 1,3 * * *", "Europe/Berlin", 60),  # 02:00 is skipped in spring: 01:00 CET -> 03:00 CEST
    ],
)
def test_minimum_gap_is_computed_from_the_expression(cron, zone, gap):
    assert minimum_gap(parse_cron(cron), zone, datetime(2026, 1, 1, tzinfo=UTC)) == timedelta(
        minutes=gap
    )


def test_is_fire_instant():
    spec = parse_cron("0 * * * *")
    assert is_fire_instant(spec, "Asia/Kolkata", datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
    assert not is_fire_instant(spec, "Asia/Kolkata", datetime(2026, 1, 1, 10, 0, tzinfo=UTC))


def test_next_fire_times_never_loops_where_robfig_answers_an_earlier_instant():
    """In Pacific/Chatham, `48 3 * * *` after the April 2015 fall-back comes back at or before
    the instant asked about; the loops over fires (status, accounting sweep) must still end,
    with fires that only move forward."""
    spec = parse_cron("48 3 * * *")
    fires = next_fire_times(spec, "Pacific/Chatham", datetime(2015, 4, 4, 12, 0, tzinfo=UTC), 4)
    assert len(fires) == 4
    assert all(a < b for a, b in itertools.pairwise(fires)), fires
