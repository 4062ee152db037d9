"""The status a schedule shows, computed against fixed dates (DST days included)."""

import uuid
from datetime import UTC, datetime

from wfclock.controller.builders import Schedule, build_cronjob, build_one_time_job
from wfclock.controller.reconciler import Context, status_for
from wfclock.model import Rules, validate_spec
from wfclock.settings import Settings

SETTINGS = Settings(database_url="postgresql://x/y")


def schedule(trigger, now, **spec):
    parsed = validate_spec(
        {"tenant": "acme", "workflowId": str(uuid.uuid4()), "workflowVersion": 2, "trigger": trigger, **spec},
        Rules(now=now),
    )  # fmt: skip
    return Schedule("daily", "acme", str(uuid.uuid4()), parsed)


def row(s: Schedule):
    return {
        "status": "scheduled", "trigger_type": s.spec.trigger.type, "timezone": s.spec.trigger.timezone,
        "registered_kind": "CronJob", "registered_name": "daily-x", "last_fire_at": None,
        "last_run_id": None, "last_run_status": None, "last_error": None, "run_at": None,
    }  # fmt: skip


def status_at(now, trigger):
    s = schedule(trigger, now)
    return status_for(Context(SETTINGS, None, None, clock=lambda: now), s, row(s), 1, [])


def test_status_shows_the_skipped_0230_on_berlins_spring_forward_day():
    status = status_at(
        datetime(2027, 3, 27, 12, tzinfo=UTC),
        {"type": "recurring", "cron": "30 2 * * *", "timezone": "Europe/Berlin"},
    )
    fires = status["nextFires"]
    assert fires[0]["local"] == "2027-03-29T02:30:00+02:00"
    assert "2027-03-28 02:30 does not exist" in fires[0]["note"]
    assert status["nextFireAt"] == "2027-03-29T00:30:00Z"


def test_status_shows_both_0130_fires_on_new_yorks_fall_back_day():
    status = status_at(
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        {"type": "recurring", "cron": "30 1 * * *", "timezone": "America/New_York"},
    )
    first, second, third = status["nextFires"][:3]
    assert (first["at"], first["local"]) == ("2026-11-01T05:30:00Z", "2026-11-01T01:30:00-04:00")
    assert (second["at"], second["local"]) == ("2026-11-01T06:30:00Z", "2026-11-01T01:30:00-05:00")
    assert "doubled" in first["note"] and "doubled" in second["note"] and "note" not in third


def test_missed_fire_policies_set_the_cronjob_deadline():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    latest = build_cronjob(schedule(trigger, now, startingDeadlineSeconds=600), SETTINGS)
    skip = build_cronjob(schedule(trigger, now, missedFires="skip"), SETTINGS)
    assert latest["spec"]["startingDeadlineSeconds"] == 600
    assert skip["spec"]["startingDeadlineSeconds"] == 30


def test_builders_make_restricted_launcher_pods_and_deterministic_names():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    s = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, now)
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


def test_run_at_is_judged_against_the_publish_time_of_a_first_generation():
    from wfclock.controller.reconciler import published_at

    now = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
    ctx = Context(SETTINGS, None, None, clock=lambda: now)
    created = {"creationTimestamp": "2026-11-25T12:00:00Z", "generation": 1}
    assert published_at(ctx, created) == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert published_at(ctx, {**created, "generation": 2}) == now
