"""Calendars and bounded schedules end to end: a calendar that excludes today makes a real fire
(a Job of the CronJob) start no run, with the calendar and holiday in the ledger and the status;
a schedule with maxFires 1 ends after its fire and its CronJob is removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from wfclock_devstack.processes import wait_until

from .conftest import backdate

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}


def apply_calendar(cluster, name, spec):
    body = {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowCalendar",
        "metadata": {"name": name},
        "spec": spec,
    }
    return cluster.objects.create_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", cluster.namespace, "workflowcalendars", body
    )


def calendar_status(cluster, name) -> dict:
    return (
        cluster.objects.get_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", cluster.namespace, "workflowcalendars", name
        ).get("status")
        or {}
    )


def ledger(database_url, uid, at=None):
    """The schedule's fires (outcome, reason), or only the one scheduled `at`."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT outcome, reason FROM workflow_schedule_fires WHERE schedule_id = %s "
            "AND (%s::timestamptz IS NULL OR scheduled_for = %s) ORDER BY scheduled_for",
            (uid, at, at),
        ).fetchall()


def test_a_fire_on_a_date_the_calendar_excludes_is_skipped_with_calendar_and_holiday(
    start_operator, cluster, database_url
):
    start_operator(WFCLOCK_ACCOUNTING_INTERVAL_SECONDS="3600")  # the Job delivers, not the sweep
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    created = cluster.apply("nightly", {**HOURLY, "calendars": ["closed"]})
    cluster.wait_status(
        "nightly",
        lambda s: any(c.get("reason") == "CalendarMissing" for c in s.get("conditions") or []),
        what="the CalendarMissing condition",
    )
    # Today and tomorrow: at 23:xx UTC no fire of today is left to list as excluded.
    tomorrow = hour + timedelta(days=1)
    closed = {"from": f"{hour:%Y-%m-%d}", "until": f"{tomorrow:%Y-%m-%d}", "name": "Founders Day"}
    apply_calendar(cluster, "closed", {"ranges": [closed]})
    status = cluster.wait_status(
        "nightly",
        lambda s: (
            s.get("phase") == "Scheduled"
            and any(c.get("reason") == "Registered" for c in s.get("conditions") or [])
        ),
        what="the calendar found (the schedule re-derived when it appeared)",
    )
    assert all(f["at"] >= f"{hour + timedelta(days=2):%Y-%m-%d}" for f in status["nextFires"])
    assert status["excludedFires"][0]["reason"] == "calendar:closed:Founders Day"
    assert calendar_status(cluster, "closed")["excludedDates"] == 2
    uid = created["metadata"]["uid"]
    backdate(database_url, uid)
    (cronjob,) = cluster.cronjobs()
    job = cluster.job_from_cronjob(cronjob, hour)
    cluster.wait_job_finished(job.metadata.name)
    # The fire of `hour` only: a run across the top of an hour also sees the CronJob's own fire.
    assert ledger(database_url, uid, at=hour) == [("skipped", "calendar:closed:Founders Day")]
    status = cluster.wait_status(
        "nightly", lambda s: (s.get("lastSkippedFire") or {}).get("scheduledFor")
    )
    assert status["lastSkippedFire"]["reason"] == "calendar:closed:Founders Day"


def test_a_schedule_with_max_fires_one_ends_after_its_fire_and_its_cronjob_goes(
    start_operator, cluster, database_url
):
    start_operator(WFCLOCK_ACCOUNTING_INTERVAL_SECONDS="3600")
    created = cluster.apply("once", {**HOURLY, "maxFires": 1})
    status = cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    assert status["remainingFires"] == 1
    uid = created["metadata"]["uid"]
    backdate(database_url, uid)
    (cronjob,) = cluster.cronjobs()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    cluster.job_from_cronjob(cronjob, hour - timedelta(hours=1))
    # The fire's record, not its Job: once the schedule ends, its CronJob is deleted and the
    # garbage collector takes the Job with it, perhaps before anyone saw it finish.
    wait_until(lambda: ledger(database_url, uid) == [("launched", None)], 120, "the fire launched")
    status = cluster.wait_status("once", lambda s: s.get("phase") == "Ended", what="phase Ended")
    assert status["remainingFires"] == 0 and status["nextFires"] == []
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Ended" and "maxFires 1 reached" in ready["message"]
    wait_until(lambda: cluster.cronjobs() == [], 30, "the CronJob removed")
    assert ledger(database_url, uid) == [("launched", None)]  # the state row keeps the history
