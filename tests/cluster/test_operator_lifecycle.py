"""Publishing, firing, editing, pausing and deleting WorkflowSchedules on a real control plane."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from prometheus_client import REGISTRY
from wfclock.core.fires import utc_iso
from wfclock.db.store import engine_for, get_schedule, list_fires, list_runs
from wfclock_devstack.processes import wait_until

from .conftest import backdate

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "Europe/Berlin"}


def last_full_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_publish_recurring_registers_one_cronjob_and_the_state_row(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("nightly", HOURLY)
    status = cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    assert cronjob.spec.schedule == "0 * * * *" and cronjob.spec.time_zone == "Europe/Berlin"
    assert cronjob.spec.suspend is False
    (owner,) = cronjob.metadata.owner_references
    assert (
        owner.kind == "WorkflowSchedule"
        and owner.uid == created["metadata"]["uid"]
        and owner.controller
    )
    assert len(cronjob.metadata.name) <= 52
    pod = cronjob.spec.job_template.spec.template.spec
    assert pod.automount_service_account_token is False
    assert (
        pod.security_context.run_as_non_root
        and pod.security_context.seccomp_profile.type == "RuntimeDefault"
    )
    assert pod.containers[0].security_context.read_only_root_filesystem
    row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
    assert row["status"] == "scheduled" and row["registered_name"] == cronjob.metadata.name
    assert status["registered"] == {"kind": "CronJob", "name": cronjob.metadata.name}
    assert status["nextFireAt"] == (last_full_hour() + timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert len(status["nextFires"]) == 5
    assert status["observedGeneration"] == created["metadata"]["generation"]
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Registered")


def test_a_cronjob_fire_starts_exactly_one_run_even_when_its_pod_runs_twice(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("hourly", HOURLY)
    cluster.wait_status("hourly", lambda s: s.get("phase") == "Scheduled")
    backdate(database_url, created["metadata"]["uid"])
    (cronjob,) = cluster.cronjobs()
    fire = last_full_hour()
    job = cluster.job_from_cronjob(cronjob, fire)
    cluster.wait_job_finished(job.metadata.name)
    engine = engine_for(database_url)
    (run,) = list_runs(engine)
    assert run["payload"]["scheduledFor"] == fire.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run["trigger_type"] == "recurring"
    # The same pod again (a kubelet restart, a retry): the fire key holds.
    (pod,) = cluster.pods(job.metadata.name)
    assert pod.spec.node_name and pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert '"outcome": "duplicate"' in cluster.run_pod_again(job.metadata.name)
    assert len(list_runs(engine)) == 1 and list_fires(engine)[0]["attempts"] == 2
    status = cluster.wait_status("hourly", lambda s: s.get("lastFireAt"))
    assert status["lastFireAt"] == fire.strftime("%Y-%m-%dT%H:%M:%SZ") and status[
        "lastRunId"
    ] == str(run["run_id"])


def test_one_time_schedule_is_released_at_run_at_fires_once_and_completes(
    start_operator, cluster, database_url
):
    operator = start_operator()
    run_at = soon(6)
    created = cluster.apply("once", {"type": "schedule", "runAt": run_at})
    status = cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    (job,) = cluster.jobs("one-time")
    assert job.spec.suspend is True and status["registered"]["name"] == job.metadata.name
    cluster.wait_job_finished(job.metadata.name, timeout=40)
    engine = engine_for(database_url)
    (run,) = list_runs(engine)
    assert run["trigger_type"] == "schedule"
    scheduled_for = datetime.fromisoformat(run["payload"]["scheduledFor"].replace("Z", "+00:00"))
    assert abs(scheduled_for - datetime.fromisoformat(run_at)) < timedelta(milliseconds=1)
    cluster.wait_status("once", lambda s: s.get("phase") == "Completed")
    assert get_schedule(engine, uuid.UUID(created["metadata"]["uid"]))["status"] == "completed"
    # Restart the operator, delete the Job: nothing fires again.
    operator.stop()
    cluster.batch.delete_namespaced_job(
        job.metadata.name, cluster.namespace, propagation_policy="Background"
    )
    start_operator()
    wait_until(lambda: not cluster.jobs("one-time"), 30, "the deleted Job to be gone")
    cluster.patch("once", {"metadata": {"annotations": {"poke": "1"}}})
    cluster.wait_status("once", lambda s: s.get("phase") == "Completed")
    assert cluster.jobs("one-time") == [] and len(list_runs(engine)) == 1


def test_the_real_cronjob_controller_fires_exactly_one_run_per_minute(
    start_operator, cluster, database_url
):
    start_operator(WFCLOCK_MINIMUM_INTERVAL_MINUTES="1")
    cluster.apply(
        "minutely", {"type": "recurring", "cron": "* * * * *", "timezone": "Europe/Berlin"}
    )
    cluster.wait_status("minutely", lambda s: s.get("phase") == "Scheduled")
    engine = engine_for(database_url)
    (run,) = wait_until(lambda: list_runs(engine), 90, "the controller's first fire", interval=1)
    job = cluster.jobs("recurring-fire")[0]
    minutes = int(job.metadata.name.rpartition("-")[2])
    expected = datetime.fromtimestamp(minutes * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run["payload"]["scheduledFor"] == expected
    fires = [f for f in list_fires(engine) if f["source"] == job.metadata.name]
    assert len(fires) == 1 and fires[0]["outcome"] == "launched"
    cluster.patch("minutely", {"spec": {"paused": True}})  # no more fires while the test ends


def test_metrics_report_schedules_and_ledger_fires(start_operator, cluster, database_url):
    import urllib.request

    from wfclock_devstack.ports import free_port

    port = free_port()
    start_operator(WFCLOCK_METRICS_PORT=str(port))
    cluster.apply("measured", HOURLY)
    cluster.wait_status("measured", lambda s: s.get("phase") == "Scheduled")
    text = wait_until(
        lambda: (
            (body := urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
            and 'wfclock_schedules{state="scheduled",type="recurring"} 1.0' in body
            and body
        ),
        20,
        "metrics",
    )
    assert "wfclock_reconciles_total" in text and "wfclock_one_time_release_lag_seconds" in text


FINALIZER = "wfclock.dev/finalizer"
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "admission"


def test_admission_gives_new_schedules_the_finalizer_and_a_delete_while_down_is_finalized(
    start_operator, cluster, database_url
):
    # No operator yet: the finalizer comes from the admission policy, with the create itself.
    created = cluster.apply("early", HOURLY)
    assert created["metadata"]["finalizers"] == [FINALIZER]
    cluster.delete("early")
    assert cluster.get("early")["metadata"]["deletionTimestamp"]  # held for the operator
    start_operator()
    wait_until(
        lambda: not cluster.list(), 30, "the schedule deleted while the operator was down to go"
    )
    assert cluster.cronjobs() == []
    row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
    assert row is None  # it was never registered, so there was nothing to mark


def test_an_operator_bounded_to_two_schedules_at_once_lists_in_chunks_and_handles_each_once(
    start_operator, cluster, database_url
):
    # Created while no operator runs: its first list holds all seven, read three at a time,
    # and at most two are handled at once (Settings.object_workers, list_chunk_size).
    created = [cluster.apply(f"s{i}", HOURLY) for i in range(7)]
    start_operator(WFCLOCK_OBJECT_WORKERS="2", WFCLOCK_LIST_CHUNK_SIZE="3")
    for i in range(7):
        cluster.wait_status(f"s{i}", lambda s: s.get("phase") == "Scheduled")
    owners = sorted(c.metadata.owner_references[0].name for c in cluster.cronjobs())
    assert owners == [f"s{i}" for i in range(7)]
    engine = engine_for(database_url)
    for body in created:
        assert get_schedule(engine, uuid.UUID(body["metadata"]["uid"]))["status"] == "scheduled"
    # The slots are free again: an edit after the resume is handled.
    cluster.apply("s3", {**HOURLY, "cron": "30 * * * *"})
    wait_until(
        lambda: any(
            c.spec.schedule == "30 * * * *" and c.metadata.owner_references[0].name == "s3"
            for c in cluster.cronjobs()
        ),
        30,
        "the edit of s3 to reach its CronJob",
    )


def test_an_operator_with_two_events_in_flight_handles_a_backlog_and_a_burst_each_once(
    start_operator, cluster, database_url
):
    # Twelve wait in the first list and ten more arrive at once: kopf is handed at most two
    # events at a time (Settings.events_in_flight), the rest wait in order, none is lost.
    created = [cluster.apply(f"b{i}", HOURLY) for i in range(12)]
    start_operator(WFCLOCK_EVENTS_IN_FLIGHT="2")
    created += [cluster.apply(f"b{i}", HOURLY) for i in range(12, 22)]
    for i in range(22):
        cluster.wait_status(f"b{i}", lambda s: s.get("phase") == "Scheduled")
    owners = sorted(c.metadata.owner_references[0].name for c in cluster.cronjobs())
    assert owners == sorted(f"b{i}" for i in range(22))
    engine = engine_for(database_url)
    for body in created:
        assert get_schedule(engine, uuid.UUID(body["metadata"]["uid"]))["status"] == "scheduled"
    stream = {"stream": f"workflowschedules/{cluster.namespace}"}
    assert REGISTRY.get_sample_value("wfclock_watch_events_in_flight_peak", stream) == 2
    wait_until(
        lambda: REGISTRY.get_sample_value("wfclock_watch_events_in_flight", stream) == 0,
        30,
        "every event handed to kopf to be processed",
    )
    assert REGISTRY.get_sample_value("wfclock_watch_events_waiting", stream) == 0


_probes = itertools.count()


def _policy_applies(cluster) -> bool:
    """Whether a schedule created now gets the finalizer (admission policies apply a moment
    after they are created or deleted). The probe is deleted again at once."""
    name = f"probe-{next(_probes)}"
    applied = bool(cluster.apply(name, HOURLY)["metadata"].get("finalizers"))
    cluster.delete(name)
    return applied


def test_without_the_admission_policy_the_operator_adds_the_finalizer_itself(
    control_plane, start_operator, cluster, database_url
):
    control_plane.kubectl("delete", "-f", str(POLICY))
    try:
        wait_until(lambda: not _policy_applies(cluster), 30, "the policy to stop applying")
        start_operator()
        created = cluster.apply("plain", HOURLY)
        assert not created["metadata"].get("finalizers")
        cluster.wait_status("plain", lambda s: s.get("phase") == "Scheduled")
        assert cluster.get("plain")["metadata"]["finalizers"] == [FINALIZER]
        cluster.delete("plain")
        wait_until(lambda: cluster.cronjobs() == [], 30, "the CronJob to go")
        row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
        assert row["deleted_at"] is not None
    finally:
        control_plane.kubectl("apply", "-f", str(POLICY))
        wait_until(lambda: _policy_applies(cluster), 30, "the policy to apply again")


def test_one_time_schedule_written_with_a_non_utc_offset_fires_once(
    start_operator, cluster, database_url
):
    start_operator()
    nepal = timezone(timedelta(hours=5, minutes=45))
    run_at = (datetime.now(UTC) + timedelta(seconds=6)).astimezone(nepal).isoformat()
    cluster.apply("kathmandu", {"type": "schedule", "runAt": run_at})
    cluster.wait_status("kathmandu", lambda s: s.get("phase") == "Completed", timeout=40)
    (run,) = list_runs(engine_for(database_url))
    assert run["payload"]["scheduledFor"] == utc_iso(datetime.fromisoformat(run_at))
