"""When a completed one-time schedule that opted in is deleted (pure: spec and status in)."""

from datetime import UTC, datetime

from wfclock.core.retention import deletion_due

ONE_TIME = {"trigger": {"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}}
COMPLETED = {"phase": "Completed", "lastFireAt": "2026-12-01T09:00:01Z"}


def test_due_the_given_seconds_after_the_fire_launched():
    spec = {**ONE_TIME, "deleteAfterCompletionSeconds": 3600}
    assert deletion_due(spec, COMPLETED) == datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)
    assert deletion_due({**spec, "deleteAfterCompletionSeconds": 0}, COMPLETED) == datetime(
        2026, 12, 1, 9, 0, 1, tzinfo=UTC
    )


def test_never_without_opting_in_nor_before_completion():
    assert deletion_due(ONE_TIME, COMPLETED) is None  # off by default
    spec = {**ONE_TIME, "deleteAfterCompletionSeconds": 60}
    for phase in ("Scheduled", "Paused", "Missed", "Invalid", "Failed"):
        assert deletion_due(spec, {**COMPLETED, "phase": phase}) is None
    assert deletion_due(spec, {"phase": "Completed"}) is None  # no fire recorded yet
    recurring = {"trigger": {"type": "recurring"}, "deleteAfterCompletionSeconds": 60}
    assert deletion_due(recurring, COMPLETED) is None
