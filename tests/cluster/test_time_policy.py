"""Time policies end to end: a real Job of the CronJob for a fire the daylight-saving policy drops
is refused by the launcher pod (recorded skipped, no run), and `L` is registered as a wider
CronJob. No real DST change can be waited for: the Jobs are the ones the CronJob controller made
on New York's fall-back day (2026-11-01), created as it names them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from wfclock.core.fires import fire_key_for
from wfclock.db.store import engine_for, list_fires, list_runs

# 01:30 happens twice in New York on 2026-11-01: 05:30Z (EDT) and 06:30Z (EST).
FIRST, SECOND = datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
NEW_YORK_0130 = {"type": "recurring", "cron": "30 1 * * *", "timezone": "America/New_York"}


def published_long_ago(database_url: str, uid: str) -> None:
    """Makes the fall-back day's fires the current trigger's, without making the accounting
    sweep owe (and record) every fire since then: only the trigger's start moves back."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE workflow_schedules SET trigger_effective_from = '2026-10-01T00:00:00Z' "
            "WHERE schedule_id = %s",
            (uid,),
        )


def test_the_second_0130_of_fall_back_day_is_refused_by_the_launcher_pod_under_auto(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("nightly", NEW_YORK_0130)
    status = cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    uid = created["metadata"]["uid"]
    published_long_ago(database_url, uid)
    (cronjob,) = cluster.cronjobs()
    (container,) = cronjob.spec.job_template.spec.template.spec.containers
    assert {e.name: e.value for e in container.env}["WFCLOCK_DST_POLICY"] == "Auto"
    first = cluster.job_from_cronjob(cronjob, FIRST)
    second = cluster.job_from_cronjob(cronjob, SECOND)
    for job in (first, second):
        cluster.wait_job_finished(job.metadata.name)
    engine = engine_for(database_url)
    fires = {f["fire_key"]: f for f in list_fires(engine)}
    launched, refused = fires[fire_key_for(uid, FIRST)], fires[fire_key_for(uid, SECOND)]
    assert launched["outcome"] == "launched"
    assert (refused["outcome"], refused["run_id"]) == ("skipped", None)
    assert refused["reason"].startswith("dst-policy:Auto: 2026-11-01 01:30 happens twice")
    assert [r["trigger_fire_key"] for r in list_runs(engine)] == [fire_key_for(uid, FIRST)]
    # The refused pod exits 0 (the fire is decided), its JSON line says why.
    assert "dst-policy:Auto" in cluster.run_pod_again(second.metadata.name)
    assert status["nextFires"], status


def test_last_day_of_month_is_registered_as_28_to_31_and_shown_as_written(start_operator, cluster):
    start_operator()
    cluster.apply("month-end", {"type": "recurring", "cron": "0 18 l * *", "timezone": "UTC"})
    status = cluster.wait_status("month-end", lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    assert cronjob.spec.schedule == "0 18 28-31 * *"
    days = [datetime.fromisoformat(f["at"].replace("Z", "+00:00")) for f in status["nextFires"]]
    assert days and all((d + timedelta(days=1)).day == 1 for d in days), days
