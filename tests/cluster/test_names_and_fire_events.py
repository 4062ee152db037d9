"""Any valid resource name works (labels stay within 63 characters, the full name rides in an
annotation), and what a finished fire's Job reports is what the ledger recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wfclock.core.names import SCHEDULE_LABEL, SCHEDULE_NAME_ANNOTATION
from wfclock.db.store import engine_for, list_fires, list_runs
from wfclock_devstack.processes import wait_until

from .conftest import backdate

LONGEST = ("nightly-report-" * 17)[:252] + "x"  # 253 characters: the most a name may have
HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def event_reasons(cluster, name: str) -> list[str]:
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    return [e.reason for e in events if e.involved_object.name == name]


def test_a_253_character_recurring_schedule_registers_fires_and_reports_the_fire(
    start_operator, cluster, database_url
):
    assert len(LONGEST) == 253
    start_operator()
    created = cluster.apply(LONGEST, HOURLY)
    cluster.wait_status(LONGEST, lambda s: s.get("phase") == "Scheduled", timeout=20)
    (cronjob,) = cluster.cronjobs()
    assert all(len(v) <= 63 for v in cronjob.metadata.labels.values())
    assert cronjob.metadata.labels[SCHEDULE_LABEL] != LONGEST
    assert cronjob.metadata.annotations[SCHEDULE_NAME_ANNOTATION] == LONGEST
    backdate(database_url, created["metadata"]["uid"])
    fire = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    job = cluster.job_from_cronjob(cronjob, fire)
    cluster.wait_job_finished(job.metadata.name)
    (run,) = list_runs(engine_for(database_url))
    # The finished Job finds its schedule by the annotation: an Event and a fresh status.
    wait_until(lambda: "Fired" in event_reasons(cluster, LONGEST), 20, "the Fired Event")
    status = cluster.wait_status(LONGEST, lambda s: s.get("lastRunId") == str(run["run_id"]))
    assert status["lastFireAt"] == fire.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_253_character_one_time_schedule_fires_once(start_operator, cluster, database_url):
    start_operator()
    cluster.apply(LONGEST, {"type": "schedule", "runAt": soon(5)})
    cluster.wait_status(LONGEST, lambda s: s.get("phase") == "Scheduled", timeout=20)
    (job,) = cluster.jobs("one-time")
    assert all(len(v) <= 63 for v in job.metadata.labels.values())
    cluster.wait_job_finished(job.metadata.name, timeout=40)
    cluster.wait_status(LONGEST, lambda s: s.get("phase") == "Completed")
    assert len(list_runs(engine_for(database_url))) == 1


def test_a_one_time_fire_is_reported_as_fired_never_as_failed(
    start_operator, cluster, database_url
):
    start_operator()
    cluster.apply("once", {"type": "schedule", "runAt": soon(5)})
    cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    (job,) = cluster.jobs("one-time")
    cluster.wait_job_finished(job.metadata.name, timeout=40)
    (fire,) = list_fires(engine_for(database_url))
    assert fire["source"] == job.metadata.name  # recorded under the Job that delivered it
    wait_until(lambda: "Fired" in event_reasons(cluster, "once"), 20, "the Fired Event")
    assert "FireFailed" not in event_reasons(cluster, "once")
