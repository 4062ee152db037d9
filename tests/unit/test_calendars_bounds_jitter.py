"""Calendars, bounded schedules and jitter as pure logic: the dates a calendar excludes, the
fires status.nextFires shows under them, when a schedule ends, and the per-fire jitter."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from wfclock.core.builders import Schedule, active_deadline_seconds, build_cronjob
from wfclock.core.calendars import (
    DerivedCalendar,
    derive_calendar,
    fire_refusal,
    validate_calendar,
)
from wfclock.core.fires import fire_key_for
from wfclock.core.firetime import parse_cron
from wfclock.core.jitter import jitter_offset
from wfclock.core.model import Rules, SpecError, validate_spec
from wfclock.core.nextfires import next_fires_under_policy
from wfclock.core.status import end_reason
from wfclock.launcher import ClockFire
from wfclock.settings import Settings

from launcher_job.main import jitter_wait

TODAY = date(2026, 11, 26)
RULES = Rules(now=datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


def spec_with(**trigger):
    body = {"type": "recurring", "cron": "0 9 * * *", "timezone": "Europe/Berlin", **trigger}
    return {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": body}


# --- calendar date maths ------------------------------------------------------------------------


def test_bavarian_holidays_name_the_holiday_and_cover_this_year_and_next():
    derived = derive_calendar(
        validate_calendar({"holidays": {"country": "DE", "subdivision": "BY"}}), TODAY
    )
    assert (derived.horizon_start, derived.horizon_end) == (date(2026, 1, 1), date(2027, 12, 31))
    assert derived.excluded[date(2026, 1, 6)] == "Epiphany"  # Bavaria's, not Berlin's
    assert derived.excluded[date(2027, 12, 25)] == "Christmas Day"
    assert date(2026, 1, 7) not in derived.excluded
    berlin = derive_calendar(
        validate_calendar({"holidays": {"country": "DE", "subdivision": "BE"}}), TODAY
    )
    assert date(2026, 1, 6) not in berlin.excluded
    assert derived.holidays_version and berlin.holidays_version == derived.holidays_version


def test_explicit_dates_and_inclusive_ranges_are_excluded_with_their_names():
    derived = derive_calendar(
        validate_calendar(
            {
                "dates": [{"date": "2026-12-24", "name": "Christmas Eve"}, {"date": "2026-06-01"}],
                "ranges": [
                    {"from": "2026-12-28", "until": "2026-12-31", "name": "year-end freeze"}
                ],
            }
        ),
        TODAY,
    )
    assert derived.excluded[date(2026, 12, 24)] == "Christmas Eve"
    assert derived.excluded[date(2026, 6, 1)] == "excluded date"
    assert [d for d in derived.excluded if d.month == 12 and d.day >= 27] == [
        date(2026, 12, d) for d in (28, 29, 30, 31)
    ]
    assert derived.holidays_version is None


def test_business_days_only_refuses_weekends_and_holidays_but_not_weekdays():
    derived = derive_calendar(
        validate_calendar({"holidays": {"country": "US"}, "businessDaysOnly": True}), TODAY
    )
    assert derived.refusal(date(2026, 11, 28)) == "weekend"  # a Saturday
    assert derived.refusal(date(2026, 11, 26)) == "Thanksgiving Day"  # a Thursday
    assert derived.refusal(date(2026, 11, 27)) is None
    assert derived.refusal(date(2028, 1, 3)) == "beyond-horizon"


def test_a_fire_is_judged_by_its_date_in_the_schedules_own_zone():
    calendar = DerivedCalendar(date(2026, 1, 1), date(2027, 12, 31), {date(2026, 1, 6): "Epiphany"})
    late_on_the_5th_utc = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # 00:30 on the 6th in Berlin
    assert fire_refusal(["by"], {"by": calendar}, "Europe/Berlin", late_on_the_5th_utc) == (
        "calendar:by:Epiphany"
    )
    assert fire_refusal(["by"], {"by": calendar}, "UTC", late_on_the_5th_utc) is None
    assert fire_refusal(["gone"], {}, "UTC", late_on_the_5th_utc) == "calendar:gone:missing"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"holidays": {"country": "XX"}}, "spec.holidays.country"),
        ({"holidays": {"country": "DE", "subdivision": "ZZ"}}, "spec.holidays.subdivision"),
        ({"ranges": [{"from": "2026-12-31", "until": "2026-12-01"}]}, "spec.ranges.0"),
        ({"dates": [{"date": "tomorrow"}]}, "spec.dates.0.date"),
        ({"weekends": True}, "spec.weekends"),
    ],
)
def test_an_invalid_calendar_is_refused_naming_the_field(spec, field):
    with pytest.raises(SpecError) as error:
        validate_calendar(spec)
    assert error.value.problems[0].field == field


def test_next_fires_leave_excluded_dates_out_and_say_which_were_excluded():
    calendar = derive_calendar(
        validate_calendar({"dates": [{"date": "2026-11-27", "name": "Black Friday"}]}), TODAY
    )
    shown, excluded = next_fires_under_policy(
        parse_cron("0 9 * * *"),
        "Europe/Berlin",
        datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        3,
        lambda fire: fire_refusal(["shop"], {"shop": calendar}, "Europe/Berlin", fire),
    )
    assert [f["at"] for f in shown] == [
        "2026-11-28T08:00:00Z",
        "2026-11-29T08:00:00Z",
        "2026-11-30T08:00:00Z",
    ]
    assert excluded == [
        {
            "at": "2026-11-27T08:00:00Z",
            "local": "2026-11-27T09:00:00+01:00",
            "reason": "calendar:shop:Black Friday",
        }
    ]


def test_a_frequent_cron_skips_a_whole_excluded_weekend_without_listing_every_fire():
    calendar = derive_calendar(validate_calendar({"businessDaysOnly": True}), TODAY)
    shown, excluded = next_fires_under_policy(
        parse_cron("*/5 * * * *"),
        "UTC",
        datetime(2026, 11, 27, 23, 50, tzinfo=UTC),  # Friday night
        3,
        lambda fire: fire_refusal(["work"], {"work": calendar}, "UTC", fire),
    )
    assert [f["at"] for f in shown] == [
        "2026-11-27T23:55:00Z",
        "2026-11-30T00:00:00Z",
        "2026-11-30T00:05:00Z",
    ]
    assert [e["reason"] for e in excluded] == ["calendar:work:weekend"] * 2


# --- bounds -------------------------------------------------------------------------------------


def test_next_fires_stay_inside_the_active_window_and_the_remaining_count():
    cron, after = parse_cron("0 9 * * *"), datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    shown, _ = next_fires_under_policy(
        cron,
        "UTC",
        after,
        5,
        lambda fire: None,
        active_from=datetime(2026, 12, 1, tzinfo=UTC),
        active_until=datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
    )
    assert [f["at"] for f in shown] == [
        "2026-12-01T09:00:00Z",
        "2026-12-02T09:00:00Z",
        "2026-12-03T09:00:00Z",  # activeUntil itself is inside the window
    ]
    shown, _ = next_fires_under_policy(cron, "UTC", after, 5, lambda fire: None, remaining=2)
    assert len(shown) == 2
    shown, _ = next_fires_under_policy(cron, "UTC", after, 5, lambda fire: None, remaining=0)
    assert shown == []


def test_a_schedule_ends_at_max_fires_or_once_active_until_and_its_grace_passed():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    grace = timedelta(minutes=6)
    assert end_reason(3, None, 3, now, grace) == "maxFires 3 reached (3 fires launched)"
    assert end_reason(3, None, 2, now, grace) is None
    until = now - timedelta(minutes=5)
    assert end_reason(None, until, 0, now, grace) is None  # its last fire may still be in flight
    assert end_reason(None, until, 0, now + timedelta(minutes=2), grace) == (
        "activeUntil 2026-11-26T11:55:00Z passed"
    )


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        (
            {"activeFrom": "2026-12-02T00:00:00Z", "activeUntil": "2026-12-01T00:00:00Z"},
            "activeUntil",
        ),
        ({"activeFrom": "2026-12-02 00:00:00"}, "activeFrom"),
        ({"maxFires": 0}, "maxFires"),
        ({"maxFires": "3"}, "maxFires"),
        ({"jitter": "24h"}, "jitter"),
        ({"jitter": "soon"}, "jitter"),
        ({"calendars": ["Holidays"]}, "calendars.0"),
        ({"calendars": ["de", "de"]}, "calendars"),
    ],
)
def test_invalid_bounds_jitter_and_calendars_are_refused_naming_the_field(trigger, field):
    with pytest.raises(SpecError) as error:
        validate_spec(spec_with(**trigger), RULES)
    assert error.value.problems[0].field == f"spec.trigger.{field}"


def test_bounds_are_only_for_a_recurring_trigger():
    body = spec_with()
    body["trigger"] = {"type": "schedule", "runAt": "2026-12-01T09:00:00Z", "maxFires": 1}
    with pytest.raises(SpecError) as error:
        validate_spec(body, RULES)
    assert error.value.problems[0].field == "spec.trigger.maxFires"


# --- jitter -------------------------------------------------------------------------------------


def test_jitter_is_the_same_for_the_same_fire_and_stays_within_its_range():
    uid = uuid.uuid4()
    keys = [fire_key_for(uid, datetime(2026, 11, 26, h, tzinfo=UTC)) for h in range(24)]
    offsets = [jitter_offset(key, 300) for key in keys]
    assert offsets == [jitter_offset(key, 300) for key in keys]
    assert all(timedelta(0) <= o <= timedelta(seconds=300) for o in offsets)
    assert len(set(offsets)) > 20  # spread, not one offset for all
    assert jitter_offset(keys[0], 0) == timedelta(0)


def test_the_launcher_waits_its_fires_offset_and_a_late_retry_waits_no_more():
    uid = uuid.uuid4()
    at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    fire = ClockFire(uid, at, "job")
    offset = jitter_offset(fire_key_for(uid, at), 600).total_seconds()
    assert jitter_wait(fire, 600, at + timedelta(seconds=2)) == pytest.approx(max(offset - 2, 0))
    assert jitter_wait(fire, 600, at + timedelta(seconds=601)) == 0


def test_a_jittered_cronjob_tells_the_launcher_and_its_job_deadline_leaves_room():
    spec = validate_spec(spec_with(jitter="10m"), RULES)
    schedule = Schedule("nightly", "acme", str(uuid.uuid4()), spec)
    plain = Schedule("nightly", "acme", str(uuid.uuid4()), validate_spec(spec_with(), RULES))
    assert active_deadline_seconds(schedule) == active_deadline_seconds(plain) + 600
    env = build_cronjob(schedule, Settings())["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "WFCLOCK_JITTER_SECONDS", "value": "600"} in env
