"""When a spec counts as published (the moment "runAt in the future" is judged at)."""

from datetime import UTC, datetime

from wfclock.controller.spec import published_at


def test_run_at_is_judged_against_the_publish_time_of_a_first_generation():
    now = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
    created = {"creationTimestamp": "2026-11-25T12:00:00Z", "generation": 1}
    assert published_at(created, now) == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert published_at({**created, "generation": 2}, now) == now
