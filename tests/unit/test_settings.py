"""Operator settings that guard the fire ledger."""

import pytest
from pydantic import ValidationError
from wfclock.settings import Settings


def test_ledger_retention_defaults_to_90_days():
    assert Settings().ledger_retention_days == 90


@pytest.mark.parametrize("days", [0, 14, 3650])
def test_ledger_retention_accepts_never_or_at_least_two_weeks(days):
    assert Settings(ledger_retention_days=days).ledger_retention_days == days


@pytest.mark.parametrize("days", [-1, 1, 13])
def test_ledger_retention_shorter_than_the_longest_delivery_window_is_refused(days):
    with pytest.raises(ValidationError) as refused:
        Settings(ledger_retention_days=days)
    message = str(refused.value)
    assert (
        "WFCLOCK_LEDGER_RETENTION_DAYS" in message and "0 (never prune) or at least 14" in message
    )
