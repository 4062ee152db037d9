"""Next fires as people read them: local time, offsets and daylight-saving notes."""

from datetime import UTC, datetime, timedelta

from wfclock.core.firetime import parse_cron
from wfclock.core.nextfires import next_fires_view


def test_next_fires_view_is_the_same_anywhere_within_a_minute_and_callers_cannot_change_it():
    spec = parse_cron("*/15 * * * *")
    minute = datetime(2026, 3, 29, 0, 44, tzinfo=UTC)  # Berlin springs forward at 01:00 UTC
    views = [
        next_fires_view(spec, "Europe/Berlin", minute + timedelta(seconds=s), 3)
        for s in (0, 0.5, 30, 59.999)
    ]
    assert all(v == views[0] for v in views)
    assert [v["at"] for v in views[0]] == [
        "2026-03-29T00:45:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-29T01:15:00Z",
    ]
    assert views[0][1]["local"] == "2026-03-29T03:00:00+02:00"
    views[0][0]["at"] = "changed"
    assert next_fires_view(spec, "Europe/Berlin", minute, 3)[0]["at"] == "2026-03-29T00:45:00Z"
    # A fire on the minute itself is not "after" it, from any second of that minute.
    at_fire = next_fires_view(spec, "Europe/Berlin", minute + timedelta(minutes=1, seconds=20), 1)
    assert at_fire[0]["at"] == "2026-03-29T01:00:00Z"
