"""Fire keys, instants and the scheduled time a CronJob's Job name carries."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from wfclock.core import firetime
from wfclock.core.fires import (
    fire_key_for,
    fires_between,
    parse_instant,
    parse_rfc3339,
    scheduled_for_from_job_name,
    utc_iso,
)
from wfclock.core.firetime import next_fire_after


def test_fire_key_uses_the_scheduled_instant_in_utc():
    at = datetime(2026, 3, 8, 15, 0, tzinfo=UTC).astimezone()
    key = fire_key_for("6c0a", at)
    assert key == "workflow-schedule-fire:6c0a:2026-03-08T15:00:00Z"


def test_job_name_carries_unix_minutes():
    assert scheduled_for_from_job_name("wfs-a-b-29393040", "wfs-a-b") == datetime(
        2025, 11, 19, 20, 0, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="kubectl create job"):
        scheduled_for_from_job_name("wfs-a-b-manual", "wfs-a-b")


def test_instants_keep_milliseconds_and_need_an_offset():
    assert parse_instant("2026-12-01T09:00:00.123456+01:00") == datetime(
        2026, 12, 1, 8, 0, 0, 123000, tzinfo=UTC
    )
    kept = parse_rfc3339("2026-12-01T09:00:00+05:45")
    assert kept.utcoffset() == timedelta(hours=5, minutes=45)
    assert utc_iso(kept) == "2026-12-01T03:15:00Z"
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_instant("2026-12-01T09:00:00")
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_instant("tomorrow")


def test_fires_between_is_half_open():
    row = {"trigger_type": "recurring", "cron": "0 * * * *", "timezone": "UTC", "run_at": None}
    begin = datetime(2026, 1, 1, 10, tzinfo=UTC)
    fires = fires_between(row, begin, begin + timedelta(hours=2))
    assert fires == [begin + timedelta(hours=1), begin + timedelta(hours=2)]
    one_time = {
        "trigger_type": "schedule",
        "run_at": begin.astimezone(timezone(timedelta(hours=3))),
    }
    assert fires_between(one_time, begin - timedelta(seconds=1), begin) == [begin]
    assert fires_between(one_time, begin, begin + timedelta(hours=1)) == []


def test_fires_between_computes_only_the_fires_it_returns_and_the_next(monkeypatch):
    """The sweep asks every schedule for its few owed minutes on every pass: computing fires
    ahead (a batch of 500) was most of its CPU under a backlog (`bench/sweep_backlog.py`)."""
    calls = []

    def counted(spec, zone, after):
        calls.append(after)
        return next_fire_after(spec, zone, after)

    monkeypatch.setattr(firetime, "next_fire_after", counted)
    row = {"trigger_type": "recurring", "cron": "* * * * *", "timezone": "UTC", "run_at": None}
    begin = datetime(2026, 1, 1, 10, tzinfo=UTC)
    fires = fires_between(row, begin, begin + timedelta(minutes=10))
    assert fires == [begin + timedelta(minutes=m) for m in range(1, 11)]
    assert len(calls) == 11
