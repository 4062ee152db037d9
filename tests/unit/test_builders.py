"""Child objects built from a schedule: restricted launcher pods, policies, deterministic names."""

from datetime import UTC, datetime

import pytest
from wfclock.core.builders import Schedule, build_cronjob, build_one_time_job, child_name

from ._schedules import SETTINGS, schedule

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_missed_fire_policies_set_the_cronjob_deadline():
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    latest = build_cronjob(schedule(trigger, NOW, startingDeadlineSeconds=600), SETTINGS)
    skip = build_cronjob(schedule(trigger, NOW, missedFires="skip"), SETTINGS)
    assert latest["spec"]["startingDeadlineSeconds"] == 600
    assert skip["spec"]["startingDeadlineSeconds"] == 30


def test_builders_make_restricted_launcher_pods_and_deterministic_names():
    s = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, NOW)
    job = build_one_time_job(s, SETTINGS)
    assert job == build_one_time_job(s, SETTINGS)
    assert job["spec"]["suspend"] is True and len(job["metadata"]["name"]) <= 63
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["WFCLOCK_SCHEDULED_FOR"]["value"] == "2026-12-01T08:00:00Z"
    assert "secretKeyRef" in env["WFCLOCK_DATABASE_URL"]["valueFrom"]
    long = Schedule("x" * 250, "acme", s.uid, s.spec)
    assert len(build_one_time_job(long, SETTINGS)["metadata"]["name"]) <= 63


def test_cronjob_carries_cron_zone_and_pause():
    trigger = {"type": "recurring", "cron": "15 9 * * 1-5", "timezone": "America/New_York"}
    cronjob = build_cronjob(schedule(trigger, NOW, paused=True), SETTINGS)
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == (
        "15 9 * * 1-5",
        "America/New_York",
        True,
    )
    assert cronjob["metadata"]["ownerReferences"][0]["controller"] is True


@pytest.mark.parametrize("offset", ["+05:45", "-03:30", "+14:00", "+01:00", "Z"])
def test_one_time_names_and_keys_come_from_the_utc_instant_for_any_offset(offset):
    local = {
        "+05:45": "14:45",
        "-03:30": "05:30",
        "+14:00": "23:00",
        "+01:00": "10:00",
        "Z": "09:00",
    }
    s = schedule({"type": "schedule", "runAt": f"2026-12-01T{local[offset]}:00{offset}"}, NOW)
    job = build_one_time_job(s, SETTINGS)
    # The name the release queue un-suspends is the name of the Job that was created.
    assert child_name(s) == job["metadata"]["name"]
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WFCLOCK_SCHEDULED_FOR"] == "2026-12-01T09:00:00Z"
    same_instant_in_utc = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}, NOW)
    renamed = Schedule(s.name, s.namespace, s.uid, same_instant_in_utc.spec)
    assert child_name(renamed) == child_name(s)
