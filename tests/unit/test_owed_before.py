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


def test_nothing_before_the_pruned_horizon():
    pruned = T + timedelta(minutes=15)
    assert owed_before(row(), T + timedelta(minutes=30), pruned) == minutes(15, 20, 25)


def one_time(**overrides):
    return row(trigger_type="schedule", cron=None, run_at=T + timedelta(minutes=5), **overrides)


def test_a_one_time_registration_owes_its_run_at_when_it_passed_before_the_change():
    assert owed_before(one_time(), T + timedelta(minutes=30)) == minutes(5)
    assert owed_before(one_time(), T + timedelta(minutes=5)) == []  # changed at its instant
    assert owed_before(one_time(), T + timedelta(minutes=30), limit=None) == minutes(5)


def test_a_one_time_registration_owes_nothing_after_its_pause_pruned_or_accounted():
    opened = SimpleNamespace(lower=T + timedelta(minutes=1), upper=None)
    assert owed_before(one_time(quiet=[opened]), T + timedelta(hours=1)) == []
    pruned = T + timedelta(minutes=10)
    assert owed_before(one_time(), T + timedelta(minutes=30), pruned) == []
    # Accounted already (the sweep went past it): not owed again.
    accounted = one_time(accounted_until=T + timedelta(minutes=6))
    assert owed_before(accounted, T + timedelta(minutes=30)) == []
