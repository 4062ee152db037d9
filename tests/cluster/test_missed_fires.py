"""Fires missed while nothing could start them: latest (default), skip, catchUp."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from wfclock.db.store import engine_for, list_fires, list_runs
from wfclock_devstack.processes import terminate, wait_until

from .conftest import backdate

EVERY_FIVE = {"type": "recurring", "cron": "*/5 * * * *", "timezone": "Europe/Berlin"}
EVERY_MINUTE = {"type": "recurring", "cron": "* * * * *", "timezone": "UTC"}


def test_catch_up_launches_every_missed_fire_in_the_window_exactly_once(
    start_operator, cluster, database_url
):
    operator = start_operator()
    created = cluster.apply("catchup", EVERY_FIVE, missedFires="catchUp", catchUpWindowSeconds=3600)
    cluster.wait_status("catchup", lambda s: s.get("phase") == "Scheduled")
    backdate(
        database_url, created["metadata"]["uid"], hours=3
    )  # published hours ago, operator down since
    operator.stop()
    now = datetime.now(UTC)
    start_operator()  # resume: catch up
    engine = engine_for(database_url)
    runs = wait_until(
        lambda: len(list_runs(engine)) >= 11 and list_runs(engine), 60, "the catch-up"
    )
    fires = sorted(
        datetime.fromisoformat(r["payload"]["scheduledFor"].replace("Z", "+00:00")) for r in runs
    )
    assert all(
        now - timedelta(hours=1, minutes=1) <= f <= now + timedelta(minutes=1) for f in fires
    )
    assert all(f.minute % 5 == 0 for f in fires) and len(set(fires)) == len(fires)
    assert {r["trigger_metadata"]["source"] for r in runs} == {"catch-up"}
    count = len(runs)
    operator_again = start_operator()  # a second resume catches up nothing new
    time.sleep(5)
    operator_again.stop()
    assert len(list_runs(engine)) <= count + 1  # at most the fire that became due meanwhile


def test_latest_fires_the_missed_one_within_the_deadline_and_skip_drops_it(
    start_operator, control_plane, cluster, database_url
):
    start_operator(WFCLOCK_MINIMUM_INTERVAL_MINUTES="1")
    cluster.apply("latest", EVERY_MINUTE, startingDeadlineSeconds=300)
    cluster.apply("skip", EVERY_MINUTE, missedFires="skip")
    for name in ("latest", "skip"):
        cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled")
    # Stop the controller-manager just after a minute boundary, restart it 45 s after the next.
    wait_until(lambda: 2 <= datetime.now(UTC).second <= 20, 70, "a fresh minute")
    terminate(control_plane.processes.pop("kube-controller-manager"))
    missed = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    try:
        wait_until(
            lambda: datetime.now(UTC) > missed + timedelta(seconds=45),
            120,
            "the missed fire to age",
        )
    finally:
        control_plane.start_controller_manager()
    minute = int(missed.timestamp()) // 60
    names = {
        cj.metadata.labels["wfclock.dev/schedule"]: cj.metadata.name for cj in cluster.cronjobs()
    }
    engine = engine_for(database_url)
    expected = missed.strftime("%Y-%m-%dT%H:%M:%SZ")

    latest_uid = cluster.get("latest")["metadata"]["uid"]

    def latest_ran():  # the latest schedule's runs (the skip one may run its fire too)
        return [
            r
            for r in list_runs(engine)
            if r["payload"]["scheduledFor"] == expected and str(r["schedule_id"]) == latest_uid
        ]

    (run,) = wait_until(latest_ran, 60, "the latest policy's late fire", interval=1)
    # Its Job once the controller is back, or the operator's accounting if that came first:
    # one run either way.
    assert run["trigger_metadata"]["source"] in (f"{names['latest']}-{minute}", "recovery")
    jobs = {j.metadata.name for j in cluster.jobs()}
    assert f"{names['skip']}-{minute}" not in jobs
    # The skip policy's fire is never silent: launched within its 30 s or recorded as missed.
    skip_uid = cluster.get("skip")["metadata"]["uid"]

    def skip_accounted():
        return [f for f in list_fires(engine, uuid.UUID(skip_uid)) if f["scheduled_for"] == missed]

    (fire,) = wait_until(skip_accounted, 90, "the skip policy's fire in the ledger", interval=1)
    assert fire["outcome"] == "launched" or fire["reason"].startswith("missed")
    for name in ("latest", "skip"):
        cluster.patch(name, {"spec": {"paused": True}})
