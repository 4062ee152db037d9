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


RENAMED = [
    ("DATABASE_SECRET_NAME", "database_credentials_name"),
    ("DATABASE_SECRET_KEY", "database_credentials_key"),
    ("DATABASE_SECRET_SOURCE", "database_credentials_source"),
]


@pytest.mark.parametrize("old, field", RENAMED)
def test_a_setting_renamed_off_secret_is_still_read_under_its_old_name_with_a_warning(
    old, field, monkeypatch, caplog
):
    monkeypatch.setenv(f"WFCLOCK_{old}", "acme/db")
    settings = Settings()
    assert getattr(settings, field) == "acme/db"
    assert f"WFCLOCK_{old} is deprecated, use WFCLOCK_{field.upper()}" in caplog.text
    assert "SECRET" not in str(settings.model_dump().keys()).upper()  # nor in the startup log


@pytest.mark.parametrize("old, field", RENAMED)
def test_the_new_name_wins_over_the_old_one(old, field, monkeypatch, caplog):
    monkeypatch.setenv(f"WFCLOCK_{old}", "old")
    monkeypatch.setenv(f"WFCLOCK_{field.upper()}", "new")
    assert getattr(Settings(), field) == "new"
    assert f"WFCLOCK_{old} is ignored" in caplog.text


def test_finished_job_ttl_defaults_to_a_day_and_refuses_a_negative_one():
    assert Settings().launcher_ttl_seconds_after_finished == 86400
    with pytest.raises(ValidationError) as refused:
        Settings(launcher_ttl_seconds_after_finished=-1)
    assert "launcher_ttl_seconds_after_finished" in str(refused.value)


@pytest.mark.parametrize("pattern", ["team-*", "!kube-system", "a,b", "team-?", ""])
def test_a_namespace_pattern_is_refused_naming_the_setting(pattern):
    # kopf would watch what the glob matches, but the sweep and the resync would read it as one
    # namespace's name and account none of those schedules.
    with pytest.raises(ValidationError, match="WFCLOCK_NAMESPACES.*not a namespace name"):
        Settings(namespaces=["team-a", pattern])


def test_namespace_names_are_accepted_for_a_shard():
    assert Settings(namespaces=["team-a", "team-b"]).namespaces == ["team-a", "team-b"]
