"""Retention: a fire's finished Job and its pod are deleted by Kubernetes' ttl-after-finished
controller, and a one-time schedule whose Job went that way never fires again, across an
operator restart and its periodic resyncs; a completed one-time schedule that opted in is
deleted after its own TTL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client.rest import ApiException
from wfclock.db.store import engine_for, get_schedule, list_fires, list_runs
from wfclock_devstack.processes import wait_until

TTL_SECONDS = 3
RESYNC_SECONDS = 5


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _pods_of(cluster, job_name: str) -> list:
    return cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
    ).items


def test_a_one_time_job_deleted_after_its_ttl_is_never_made_again(
    start_operator, cluster, database_url
):
    env = {
        "WFCLOCK_LAUNCHER_TTL_SECONDS_AFTER_FINISHED": str(TTL_SECONDS),
        "WFCLOCK_RESYNC_INTERVAL_SECONDS": str(RESYNC_SECONDS),
    }
    operator = start_operator(**env)
    cluster.apply("once", {"type": "schedule", "runAt": soon(6)})
    cluster.apply("later", {"type": "schedule", "runAt": soon(3600)})
    cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    fired = cluster.status("once")["registered"]["name"]
    pending = cluster.wait_status("later", lambda s: s.get("registered"))["registered"]["name"]
    job = cluster.batch.read_namespaced_job(fired, cluster.namespace)
    assert job.spec.ttl_seconds_after_finished == TTL_SECONDS

    cluster.wait_job_finished(fired, timeout=40)
    engine = engine_for(database_url)
    assert len(list_runs(engine)) == 1
    cluster.wait_status("once", lambda s: s.get("phase") == "Completed")
    # The ttl-after-finished controller deletes the Job, the garbage collector its pod.
    wait_until(lambda: fired not in {j.metadata.name for j in cluster.jobs()}, 60, "the TTL")
    wait_until(lambda: _pods_of(cluster, fired) == [], 60, "the Job's pod to go")
    assert [j.metadata.name for j in cluster.jobs()] == [pending]  # pending: not finished

    # While the operator is down, the pending schedule's Job is deleted by hand: that one must
    # come back (the restart's reconcile and resync do run), the fired one must not.
    operator.stop()
    cluster.batch.delete_namespaced_job(pending, cluster.namespace, propagation_policy="Background")
    wait_until(lambda: cluster.jobs() == [], 30, "the pending Job to go")
    start_operator(**env)
    wait_until(lambda: [j.metadata.name for j in cluster.jobs()] == [pending], 30, "restore")
    time.sleep(RESYNC_SECONDS * 1.2 * 2 + 1)  # at least two resyncs of every child
    assert [j.metadata.name for j in cluster.jobs()] == [pending]
    assert len(list_runs(engine)) == 1
    assert cluster.status("once")["phase"] == "Completed"


def test_a_completed_one_time_schedule_that_opted_in_is_deleted_after_its_ttl(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply(
        "once-and-gone", {"type": "schedule", "runAt": soon(5)}, deleteAfterCompletionSeconds=2
    )
    cluster.apply("once-and-kept", {"type": "schedule", "runAt": soon(5)})
    uid = created["metadata"]["uid"]
    wait_until(
        lambda: [s["metadata"]["name"] for s in cluster.list()] == ["once-and-kept"],
        60,
        "the opted-in schedule to be deleted",
        interval=0.5,
    )
    cluster.wait_status("once-and-kept", lambda s: s.get("phase") == "Completed", timeout=60)
    engine = engine_for(database_url)
    assert len(list_runs(engine)) == 2  # each fired once, one of them then went
    row = get_schedule(engine, uuid.UUID(uid))
    assert row["deleted_at"] is not None  # deleted the usual way: its state row marked
    assert [f["outcome"] for f in list_fires(engine) if str(f["schedule_id"]) == uid] == [
        "launched"
    ]
    wait_until(
        lambda: (
            "DeletedAfterCompletion"
            in {e.reason for e in cluster.core.list_namespaced_event(cluster.namespace).items}
        ),
        30,
        "the Event that says why it went",
    )
    time.sleep(3)  # well past the kept schedule's completion: it is not deleted
    assert [s["metadata"]["name"] for s in cluster.list()] == ["once-and-kept"]


def test_delete_after_completion_on_a_recurring_schedule_is_refused_by_the_api_server(
    crds, cluster
):
    with pytest.raises(ApiException) as refused:
        cluster.apply(
            "hourly",
            {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"},
            deleteAfterCompletionSeconds=60,
        )
    assert refused.value.status == 422
    assert "deleteAfterCompletionSeconds is only for one-time schedules" in refused.value.body
