"""Every validation rule: accepted and refused examples, each refusal naming the field."""

from datetime import UTC, datetime, timedelta

import pytest
from wfclock.core.model import Rules, SpecError, validate_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = Rules(now=NOW)
BASE = {
    "tenant": "acme",
    "workflowId": "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11",
    "workflowVersion": 1,
}


def recurring(cron, timezone="UTC", **extra):
    trigger = {"type": "recurring", "cron": cron, "timezone": timezone, **extra}
    return {**BASE, "trigger": trigger}


def one_time(run_at, **extra):
    trigger = {"type": "schedule", **({"runAt": run_at} if run_at is not None else {}), **extra}
    return {**BASE, "trigger": trigger}


ACCEPTED = [
    *[
        (f"dst policy {policy}", recurring("30 2 * * *", "Europe/Berlin", dstPolicy=policy))
        for policy in (
            "Auto",
            "Kubernetes",
            "RunOnceSkipMissing",
            "RunOnceShiftMissing",
            "RunEachShiftMissing",
        )
    ],
    ("names", recurring("0 9 * jan-MAR Mon-fri")),
    ("macro", recurring("@daily")),
    ("last day of the month", recurring("0 18 L * *", "Europe/Berlin")),
    ("weekday mornings in New York", recurring("15 9 * * 1-5", "America/New_York")),
    ("every 5 minutes", recurring("*/5 * * * *")),
    ("trimmed", recurring("  0 12 * * *  ", "Europe/Berlin")),
    ("ranges and lists", recurring("0,30 8-18/2 1-15 1,6,12 *", "Asia/Kolkata")),
    ("half-hour zone", recurring("0 3 * * 0", "Australia/Lord_Howe")),
    ("one-time with offset", one_time("2026-12-01T09:00:00+01:00")),
    ("one-time in UTC", one_time("2026-11-25T12:00:01Z", timezone="Europe/Berlin")),
    (
        "paused with a reason",
        {**recurring("0 9 * * *"), "paused": True, "pauseReason": "quarter-end freeze"},
    ),
    *[
        (f"overlap {policy}", {**recurring("0 9 * * *"), "overlapPolicy": policy})
        for policy in ("Allow", "Skip", "BufferOne")
    ],
]

REFUSED = [
    ("seconds field", recurring("0 0 12 * * *"), "spec.trigger.cron", "expected exactly 5"),
    ("four fields", recurring("0 12 * *"), "spec.trigger.cron", "expected exactly 5"),
    (
        "too long",
        recurring("0 " + ",".join(["1"] * 70) + " * * *"),
        "spec.trigger.cron",
        "at most 128",
    ),
    ("unknown name", recurring("0 9 * * MONDAY"), "spec.trigger.cron", "accepted names: SUN-SAT"),
    ("month name in hours", recurring("0 JAN * * *"), "spec.trigger.cron", "only digits"),
    ("unknown macro", recurring("@every"), "spec.trigger.cron", "accepted: @yearly"),
    ("reboot macro", recurring("@reboot"), "spec.trigger.cron", "@reboot are not supported"),
    ("L in a list", recurring("0 9 1,L * *"), "spec.trigger.cron", "'L' is accepted alone"),
    ("L with a weekday", recurring("0 9 L * MON"), "spec.trigger.cron", "both day-of-month"),
    ("L in day-of-week", recurring("0 9 * * 5L"), "spec.trigger.cron", "accepted names: SUN-SAT"),
    (
        "unknown dst policy",
        recurring("0 9 * * *", dstPolicy="Vixie"),
        "spec.trigger.dstPolicy",
        "Kubernetes",
    ),
    ("question mark", recurring("0 9 ? * 1"), "spec.trigger.cron", "only digits"),
    ("minute out of range", recurring("60 * * * *"), "spec.trigger.cron", "out of range 0-59"),
    ("hour out of range", recurring("0 24 * * *"), "spec.trigger.cron", "out of range 0-23"),
    ("day-of-month zero", recurring("0 0 0 * *"), "spec.trigger.cron", "out of range 1-31"),
    ("month 13", recurring("0 0 * 13 *"), "spec.trigger.cron", "out of range 1-12"),
    ("day-of-week 7", recurring("0 0 * * 7"), "spec.trigger.cron", "out of range 0-6"),
    ("reversed range", recurring("0 5-1 * * *"), "spec.trigger.cron", "starts after it ends"),
    ("step zero", recurring("*/0 * * * *"), "spec.trigger.cron", "step 0"),
    (
        "both day fields",
        recurring("0 0 1 * 1"),
        "spec.trigger.cron",
        "both day-of-month and day-of-week",
    ),
    ("too frequent range", recurring("0-4 * * * *"), "spec.trigger.cron", "minimum interval"),
    ("too frequent step", recurring("*/2 * * * *"), "spec.trigger.cron", "minimum interval"),
    (
        "too frequent across midnight",
        recurring("58 23 * * *".replace("58 23", "0,58 0,23")),
        "spec.trigger.cron",
        "2 minutes",
    ),
    (
        "unknown zone",
        recurring("0 9 * * *", "Mars/Olympus_Mons"),
        "spec.trigger.timezone",
        "not a known IANA",
    ),
    (
        "missing zone",
        {**BASE, "trigger": {"type": "recurring", "cron": "0 9 * * *"}},
        "spec.trigger.timezone",
        "is required",
    ),
    ("past runAt", one_time("2020-01-01T00:00:00Z"), "spec.trigger.runAt", "in the past"),
    ("runAt equal to now", one_time(NOW.isoformat()), "spec.trigger.runAt", "in the past"),
    ("missing runAt", one_time(None), "spec.trigger.runAt", "is required"),
    (
        "runAt without offset",
        one_time("2027-01-01T09:00:00"),
        "spec.trigger.runAt",
        "no UTC offset",
    ),
    ("runAt garbage", one_time("next tuesday"), "spec.trigger.runAt", "not an RFC 3339"),
    (
        "cron on one-time",
        one_time("2027-01-01T09:00:00Z", cron="0 9 * * *"),
        "spec.trigger.cron",
        "not a known field",
    ),
    (
        "event trigger",
        {**BASE, "trigger": {"type": "event", "eventName": "x"}},
        "spec.trigger",
        "not a clock trigger",
    ),
    ("no trigger type", {**BASE, "trigger": {"cron": "0 9 * * *"}}, "spec.trigger", "'type'"),
    (
        "inferred payload",
        {**recurring("0 9 * * *"), "payloadSchemaMode": "inferred"},
        "spec.payloadSchemaMode",
        "only 'pinned'",
    ),
    ("workflow id", {**recurring("0 9 * * *"), "workflowId": "42"}, "spec.workflowId", "UUID"),
    (
        "workflow version",
        {**recurring("0 9 * * *"), "workflowVersion": 0},
        "spec.workflowVersion",
        "greater than or equal to 1",
    ),
    (
        "pause reason without pause",
        {**recurring("0 9 * * *"), "pauseReason": "freeze"},
        "spec.pauseReason",
        "only for a paused schedule",
    ),
    (
        "empty pause reason",
        {**recurring("0 9 * * *"), "paused": True, "pauseReason": ""},
        "spec.pauseReason",
        "at least 1 character",
    ),
    (
        "pause reason too long",
        {**recurring("0 9 * * *"), "paused": True, "pauseReason": "x" * 257},
        "spec.pauseReason",
        "at most 256 characters",
    ),
    (
        "unknown overlap policy",
        {**recurring("0 9 * * *"), "overlapPolicy": "Replace"},
        "spec.overlapPolicy",
        "'Allow', 'Skip' or 'BufferOne'",
    ),
    (
        "missing tenant",
        {k: v for k, v in recurring("0 9 * * *").items() if k != "tenant"},
        "spec.tenant",
        "is required",
    ),
    # Refused by the CRD's schema on the API server; `wfclock validate` must not call them valid.
    (
        "an integer as text",
        {**recurring("0 * * * *"), "workflowVersion": "1"},
        "spec.workflowVersion",
        "valid integer",
    ),
    (
        "true for an integer",
        {**recurring("0 * * * *"), "backoffLimit": True},
        "spec.backoffLimit",
        "valid integer",
    ),
    (
        "yes for a boolean",
        {**recurring("0 * * * *"), "paused": "yes"},
        "spec.paused",
        "valid boolean",
    ),
    (
        "a UUID without dashes",
        {**recurring("0 * * * *"), "workflowId": "0b5f1d5e8d7b4c439d2a8c9b7f0a1e11"},
        "spec.workflowId",
        "8-4-4-4-12",
    ),
    ("runAt with a space", one_time("2026-12-01 09:00:00Z"), "spec.trigger.runAt", "RFC 3339"),
    ("runAt without seconds", one_time("2026-12-01T09:00Z"), "spec.trigger.runAt", "RFC 3339"),
    ("runAt in the basic format", one_time("20261201T090000Z"), "spec.trigger.runAt", "RFC 3339"),
    (
        "an unknown field named schedule",
        {**recurring("0 * * * *"), "schedule": "0 * * * *"},
        "spec.schedule",
        "not a known field",
    ),
]


@pytest.mark.parametrize("name, spec", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(name, spec):
    validate_spec(spec, RULES)


@pytest.mark.parametrize("name, spec, field, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_naming_the_field(name, spec, field, message):
    with pytest.raises(SpecError) as refused:
        validate_spec(spec, RULES)
    fields = [p.field for p in refused.value.problems]
    assert field in fields, refused.value
    assert message in str(refused.value)


def test_community_edition_refuses_time_triggers():
    with pytest.raises(SpecError) as refused:
        validate_spec(recurring("0 9 * * *"), Rules(now=NOW, edition="community"))
    assert refused.value.reason == "EditionNotSupported"
    assert "enterprise-edition feature" in str(refused.value)


def test_minimum_interval_is_configurable():
    spec = recurring("*/2 * * * *")
    validate_spec(spec, Rules(now=NOW, minimum_interval=timedelta(minutes=1)))
    with pytest.raises(SpecError):
        validate_spec(
            recurring("*/10 * * * *"), Rules(now=NOW, minimum_interval=timedelta(minutes=15))
        )


def test_due_one_time_schedule_is_not_invalid_when_run_at_check_is_off():
    validate_spec(one_time("2020-01-01T00:00:00Z"), RULES, check_run_at=False)


def test_delete_after_completion_is_accepted_for_one_time_schedules_only():
    spec = validate_spec(
        {**one_time("2026-12-01T09:00:00Z"), "deleteAfterCompletionSeconds": 0}, RULES
    )
    assert spec.deleteAfterCompletionSeconds == 0
    assert (
        validate_spec(one_time("2026-12-01T09:00:00Z"), RULES).deleteAfterCompletionSeconds is None
    )
    with pytest.raises(SpecError) as refused:
        validate_spec({**recurring("0 * * * *"), "deleteAfterCompletionSeconds": 60}, RULES)
    assert str(refused.value).startswith("spec.deleteAfterCompletionSeconds: is only for one-time")
    for bad in (-1, 365 * 86400 + 1):
        with pytest.raises(SpecError) as refused:
            validate_spec(
                {**one_time("2026-12-01T09:00:00Z"), "deleteAfterCompletionSeconds": bad}, RULES
            )
        assert "deleteAfterCompletionSeconds" in str(refused.value)


def test_the_run_control_example_is_valid():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "run-control.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    specs = [validate_spec(doc["spec"], RULES) for doc in docs]
    assert [s.overlapPolicy for s in specs] == ["BufferOne", "Skip"]
    assert specs[1].pauseReason.startswith("quarter-end freeze")


@pytest.mark.parametrize(
    "written, registered",
    [
        ("0 9 * jan-MAR Mon-fri", "0 9 * 1-3 1-5"),
        ("0 9 * * sun,SAT", "0 9 * * 0,6"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("0 18 l * *", "0 18 L * *"),
    ],
)
def test_names_and_macros_are_normalised_to_the_numeric_form(written, registered):
    spec = validate_spec(recurring(written), RULES)
    assert spec.trigger.cron == registered


def test_last_day_of_month_is_registered_as_28_to_31():
    trigger = validate_spec(recurring("0 18 L * *"), RULES).trigger
    assert (trigger.cron, trigger.spec.registered) == ("0 18 L * *", "0 18 28-31 * *")


def test_dst_policy_defaults_to_auto_and_is_recurring_only():
    assert validate_spec(recurring("0 9 * * *"), RULES).trigger.dstPolicy == "Auto"
    with pytest.raises(SpecError) as refused:
        validate_spec(one_time("2026-12-01T09:00:00+01:00", dstPolicy="Auto"), RULES)
    assert "spec.trigger.dstPolicy" in [p.field for p in refused.value.problems]


def test_the_time_policies_example_is_valid_and_normalised():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "time-policies.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    triggers = [validate_spec(doc["spec"], RULES).trigger for doc in docs]
    assert [t.dstPolicy for t in triggers] == ["Auto", "Auto", "Kubernetes", "RunOnceShiftMissing"]
    assert [t.spec.registered for t in triggers] == [
        "30 2 * * *",
        "0 18 28-31 * *",
        "45 8 * 1-11 1-5",
        "0 0 * * 0",
    ]
