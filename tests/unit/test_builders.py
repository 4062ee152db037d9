"""Child objects built from a schedule: restricted launcher pods, policies, deterministic names."""

from datetime import UTC, datetime

from wfclock.core.builders import Schedule, build_cronjob, build_one_time_job

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
