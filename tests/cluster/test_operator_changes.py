"""Edits, pauses, deletes, downtime and refused specs, end to end."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kopf._core.reactor import processing
from wfclock.controller import drift
from wfclock.core.model import PLURAL
from wfclock.db.store import engine_for, get_schedule, list_fires, list_runs
from wfclock_devstack.processes import wait_until

from .conftest import backdate

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "Europe/Berlin"}


def last_full_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def scheduled(cluster, name):
    return cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled")


def test_editing_cron_or_zone_patches_the_same_cronjob_in_place(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("report", HOURLY)
    scheduled(cluster, "report")
    (before,) = cluster.cronjobs()
    cluster.apply(
        "report", {"type": "recurring", "cron": "30 6 * * 1-5", "timezone": "America/New_York"}
    )
    cluster.wait_status("report", lambda s: s.get("observedGeneration") == 2)
    (after,) = cluster.cronjobs()
    assert after.metadata.uid == before.metadata.uid
    assert (after.spec.schedule, after.spec.time_zone) == ("30 6 * * 1-5", "America/New_York")
    row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
    assert row["cron"] == "30 6 * * 1-5" and row["timezone"] == "America/New_York"
    assert row["trigger_effective_from"] > datetime.now(UTC) - timedelta(minutes=1)


def test_a_fire_planned_under_the_old_cron_starts_no_run_after_an_edit(
    start_operator, cluster, database_url
):
    """Kubernetes issue 63371: after an edit, the controller may start a Job for an instant the
    new schedule never produced. The launcher refuses it."""
    start_operator()
    created = cluster.apply("edited", HOURLY)
    scheduled(cluster, "edited")
    backdate(database_url, created["metadata"]["uid"])
    cluster.apply(
        "edited", {"type": "recurring", "cron": "15 * * * *", "timezone": "Europe/Berlin"}
    )
    cluster.wait_status("edited", lambda s: s.get("observedGeneration") == 2)
    (cronjob,) = cluster.cronjobs()
    job = cluster.job_from_cronjob(cronjob, last_full_hour())  # an instant of the old cron
    cluster.wait_job_finished(job.metadata.name)
    engine = engine_for(database_url)
    assert list_runs(engine) == []
    # The Job's fire (and the old cron's other fires since the backdated publish, which no Job
    # delivered) are recorded once each as superseded: at the edit, or by the Job itself.
    fires = list_fires(engine)
    assert last_full_hour() in [fire["scheduled_for"] for fire in fires]
    assert all(f["outcome"] == "skipped" and f["reason"].startswith("superseded") for f in fires)


def test_changing_run_at_registers_the_new_job_before_removing_the_old(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("once", {"type": "schedule", "runAt": soon(3600)})
    scheduled(cluster, "once")
    (old,) = cluster.jobs("one-time")
    watch_from = cluster.batch.list_namespaced_job(cluster.namespace).metadata.resource_version
    cluster.apply("once", {"type": "schedule", "runAt": soon(7200)})
    status = cluster.wait_status("once", lambda s: s.get("observedGeneration") == 2)
    wait_until(lambda: len(cluster.jobs("one-time")) == 1, 30, "one Job")
    (new,) = cluster.jobs("one-time")
    assert new.metadata.name != old.metadata.name and new.spec.suspend is True
    assert status["registered"]["name"] == new.metadata.name
    # Order of events: the new Job was added before the old one was deleted.
    from kubernetes import watch

    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            cluster.batch.list_namespaced_job,
            cluster.namespace,
            resource_version=watch_from,
            timeout_seconds=2,
        )
    ]
    added = events.index(("ADDED", new.metadata.name))
    deleted = events.index(("DELETED", old.metadata.name))
    assert added < deleted
    row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
    assert row["registered_name"] == new.metadata.name and row["next_fire_at"] == row["run_at"]


def test_switching_type_keeps_a_single_live_registration(start_operator, cluster, database_url):
    start_operator()
    created = cluster.apply("switch", HOURLY)
    scheduled(cluster, "switch")
    cluster.apply("switch", {"type": "schedule", "runAt": soon(3600)})
    cluster.wait_status("switch", lambda s: s.get("registered", {}).get("kind") == "Job")
    wait_until(lambda: cluster.cronjobs() == [], 30, "the CronJob to go")
    assert len(cluster.jobs("one-time")) == 1
    cluster.apply("switch", HOURLY)
    cluster.wait_status("switch", lambda s: s.get("registered", {}).get("kind") == "CronJob")
    wait_until(lambda: cluster.jobs("one-time") == [], 30, "the one-time Job to go")
    assert len(cluster.cronjobs()) == 1
    row = get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"]))
    assert row["trigger_type"] == "recurring" and row["registered_kind"] == "CronJob"


def test_pause_suspends_and_refuses_an_in_flight_job_then_resume_fires_again(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("paused", HOURLY)
    scheduled(cluster, "paused")
    backdate(database_url, created["metadata"]["uid"], hours=3)
    (cronjob,) = cluster.cronjobs()
    cluster.patch("paused", {"spec": {"paused": True}})
    cluster.wait_status("paused", lambda s: s.get("phase") == "Paused")
    assert cluster.cronjobs()[0].spec.suspend is True
    engine = engine_for(database_url)
    assert get_schedule(engine, uuid.UUID(created["metadata"]["uid"]))["status"] == "paused"
    job = cluster.job_from_cronjob(cronjob, last_full_hour())  # created just before the pause
    cluster.wait_job_finished(job.metadata.name)
    assert list_runs(engine) == [] and list_fires(engine)[0]["reason"] == "paused"
    cluster.patch("paused", {"spec": {"paused": False}})
    cluster.wait_status("paused", lambda s: s.get("phase") == "Scheduled")
    assert cluster.cronjobs()[0].spec.suspend is False
    job = cluster.job_from_cronjob(cronjob, last_full_hour() - timedelta(hours=1))
    cluster.wait_job_finished(job.metadata.name)
    assert len(list_runs(engine)) == 1


def test_delete_removes_children_and_refuses_an_in_flight_job(
    start_operator, cluster, database_url, python_env
):
    start_operator()
    created = cluster.apply("doomed", HOURLY)
    scheduled(cluster, "doomed")
    uid = created["metadata"]["uid"]
    backdate(database_url, uid)
    (cronjob,) = cluster.cronjobs()
    cluster.delete("doomed")
    wait_until(lambda: cluster.cronjobs() == [], 30, "the CronJob to go")
    wait_until(
        lambda: (
            not [
                o
                for o in cluster.objects.list_namespaced_custom_object(
                    "wfclock.dev", "v1alpha1", cluster.namespace, "workflowschedules"
                )["items"]
            ]
        ),
        30,
        "the schedule to go",
    )
    engine = engine_for(database_url)
    row = get_schedule(engine, uuid.UUID(uid))
    assert row["deleted_at"] is not None and row["status"] == "disabled"
    # A pod that was already running when the schedule went away.
    job_name = f"{cronjob.metadata.name}-{int(last_full_hour().timestamp()) // 60}"
    out = subprocess.run(
        ["python", "-m", "launcher_job"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**python_env, "WFCLOCK_SCHEDULE_ID": uid, "WFCLOCK_JOB_NAME": job_name},
    )
    # Refused: by the pod itself, or already at the delete, which records the fires the
    # schedule owed that no Job had delivered (the pod then meets that record).
    answer = json.loads(out.stdout)
    assert answer["outcome"] in ("skipped", "duplicate") and answer["reason"] == "deleted", answer
    assert list_runs(engine) == []
    fires = {f["scheduled_for"]: f for f in list_fires(engine)}
    assert fires[last_full_hour()]["outcome"] == "skipped"


@pytest.mark.parametrize("late_by, expect_run", [(4, True), (25, False)])
def test_operator_down_across_run_at(start_operator, cluster, database_url, late_by, expect_run):
    operator = start_operator()
    # Far enough ahead that the registration is done and the operator down well before it, on
    # a loaded machine too (at 5 s, a slow registration let the operator release the Job on
    # time before it stopped: a fire that ran, not one the restart had to judge).
    run_at = datetime.now(UTC) + timedelta(seconds=12)
    created = cluster.apply(
        "late", {"type": "schedule", "runAt": run_at.isoformat()}, startingDeadlineSeconds=15
    )
    scheduled(cluster, "late")
    operator.stop()
    (job,) = cluster.jobs("one-time")
    assert datetime.now(UTC) < run_at and job.spec.suspend is True, (
        "the operator was to stop before runAt, with the Job not released yet"
    )
    wait_until(lambda: datetime.now(UTC) > run_at + timedelta(seconds=late_by), 60, "runAt to pass")
    start_operator()
    engine = engine_for(database_url)
    if expect_run:
        cluster.wait_status("late", lambda s: s.get("phase") == "Completed", timeout=60)
        assert len(list_runs(engine)) == 1
    else:
        # The status settles on the miss with its reason (the release recorded at start and the
        # schedule's resume may each write it; the last write of the two has both).
        try:
            cluster.wait_status(
                "late",
                lambda s: (
                    s.get("phase") == "Missed"
                    and "beyond the 15s deadline" in (s.get("lastError") or "")
                ),
                timeout=60,
            )
        except TimeoutError:
            row = get_schedule(engine, uuid.UUID(created["metadata"]["uid"]))
            pytest.fail(
                f"status {cluster.status('late')} with state row {row} and fires "
                f"{list_fires(engine)}: not Missed with its reason"
            )
        (job,) = cluster.jobs("one-time")
        assert job.spec.suspend is True and list_runs(engine) == []
        row = get_schedule(engine, uuid.UUID(created["metadata"]["uid"]))
        assert (row["status"], row["last_run_status"]) == ("failed", "missed")


REFUSED = [
    (
        "zone",
        {"type": "recurring", "cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"},
        {},
        "InvalidSpec",
        "spec.trigger.timezone",
    ),
    (
        "frequent",
        {"type": "recurring", "cron": "0-4 * * * *", "timezone": "UTC"},
        {},
        "TooFrequent",
        "minimum interval",
    ),
    (
        "past",
        {"type": "schedule", "runAt": "2020-01-01T00:00:00Z"},
        {},
        "RunAtInPast",
        "in the past",
    ),
    (
        "community",
        {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"},
        {"WFCLOCK_EDITION": "community"},
        "EditionNotSupported",
        "enterprise-edition",
    ),
    (
        "tenant",
        {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"},
        {"tenant": "globex"},
        "TenantMismatch",
        "wfclock.dev/tenant",
    ),
]


@pytest.mark.parametrize(
    "case, trigger, extra, reason, message", REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused_spec_gives_a_condition_creates_nothing_and_fixing_it_recovers(
    start_operator, cluster, database_url, case, trigger, extra, reason, message
):
    env = {k: v for k, v in extra.items() if k.startswith("WFCLOCK_")}
    spec = {k: v for k, v in extra.items() if not k.startswith("WFCLOCK_")}
    start_operator(**env)
    created = cluster.apply("bad", trigger, **spec)
    status = cluster.wait_status("bad", lambda s: s.get("phase") == "Invalid")
    ready = status["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] == reason and message in ready["message"]
    assert cluster.cronjobs() == [] and cluster.jobs() == []
    assert get_schedule(engine_for(database_url), uuid.UUID(created["metadata"]["uid"])) is None
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    assert any(e.reason == reason and e.involved_object.name == "bad" for e in events)
    if case == "community":
        return  # nothing to fix in the spec: the operator's edition refuses every time trigger
    cluster.apply(
        "bad", {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"}, tenant="acme"
    )
    cluster.wait_status("bad", lambda s: s.get("phase") == "Scheduled")
    assert len(cluster.cronjobs()) == 1


def test_a_cronjob_deleted_or_suspended_by_hand_is_put_back(start_operator, cluster):
    start_operator()
    cluster.apply("hourly", {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"})
    cluster.wait_status("hourly", lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    name = cronjob.metadata.name
    cluster.batch.delete_namespaced_cron_job(name, cluster.namespace)
    wait_until(
        lambda: [c for c in cluster.cronjobs() if c.metadata.uid != cronjob.metadata.uid],
        30,
        "the deleted CronJob to come back",
    )
    cluster.batch.patch_namespaced_cron_job(name, cluster.namespace, {"spec": {"suspend": True}})
    wait_until(
        lambda: (
            cluster.batch.read_namespaced_cron_job(name, cluster.namespace).spec.suspend is False
        ),
        30,
        "the hand-suspended CronJob to be resumed",
    )


def test_the_cronjob_controllers_status_updates_are_not_judged_for_drift(
    start_operator, cluster, monkeypatch
):
    """Every fire updates its CronJob's status twice (the Job started, the Job done). Drift is
    judged by the spec: once the operator has judged a CronJob's generation, those updates are
    not looked at again (no handler thread, no database read), while a hand edit still is, and
    is put back."""
    judged = []
    judge = drift.cronjob_changed

    def counted(ctx, body, deleted):
        judged.append(body["metadata"]["generation"])
        judge(ctx, body, deleted)

    monkeypatch.setattr(drift, "cronjob_changed", counted)
    start_operator()
    cluster.apply("hourly", {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"})
    cluster.wait_status("hourly", lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    name = cronjob.metadata.name

    def suspend_by_hand_and_wait_for_the_restore() -> int:
        cluster.batch.patch_namespaced_cron_job(
            name, cluster.namespace, {"spec": {"suspend": True}}
        )
        wait_until(
            lambda: (
                cluster.batch.read_namespaced_cron_job(name, cluster.namespace).spec.suspend
                is False
            ),
            30,
            "the hand-suspended CronJob to be resumed",
        )
        return cluster.batch.read_namespaced_cron_job(name, cluster.namespace).metadata.generation

    generation = suspend_by_hand_and_wait_for_the_restore()
    wait_until(lambda: generation in judged, 30, "the restored generation to be judged")
    judged.clear()
    for hours in range(4):  # what the CronJob controller writes as fires come and go
        at = (last_full_hour() - timedelta(hours=hours)).isoformat()
        cluster.batch.patch_namespaced_cron_job_status(
            name, cluster.namespace, {"status": {"lastScheduleTime": at}}
        )
        time.sleep(0.5)  # each its own event, not merged with the next in kopf's queue
    suspend_by_hand_and_wait_for_the_restore()
    assert judged and all(g > generation for g in judged), (generation, judged)


def test_kopf_processes_a_schedules_creation_and_its_edit_but_not_the_echoes_of_its_patches(
    start_operator, cluster, monkeypatch
):
    """kopf's whole processing cycle runs for the events it acts on: a schedule's creation and
    each edit. The echo of its own status patch, and the creation of the schedule's CronJob,
    which it would do nothing with, are not processed (controller/idle_events.py). The edit
    still reaches the CronJob."""
    processed = []
    process = processing.process_resource_event

    async def counted(*, resource, raw_event, **kwargs):
        metadata = raw_event["object"]["metadata"]
        processed.append((resource.plural, raw_event["type"], metadata.get("generation")))
        return await process(resource=resource, raw_event=raw_event, **kwargs)

    monkeypatch.setattr(processing, "process_resource_event", counted)
    start_operator()
    cluster.apply("yearly", {"type": "recurring", "cron": "0 0 1 1 *", "timezone": "UTC"})
    scheduled(cluster, "yearly")
    # Yearly: no fire, and no status refresh of the sweep's, during the test. After the
    # status patch: the edit's event follows the patch's echo in the watch, and
    # kopf's worker takes the object's events in order.
    cluster.apply("yearly", {"type": "recurring", "cron": "0 0 2 1 *", "timezone": "UTC"})
    wait_until(lambda: ("workflowschedules", "MODIFIED", 2) in processed, 30, "the edit processed")
    wait_until(
        lambda: cluster.cronjobs()[0].spec.schedule == "0 0 2 1 *", 30, "the CronJob patched"
    )
    schedules = [  # the creation may come in kopf's first list, of type None
        (kind or "ADDED", generation) for plural, kind, generation in processed if plural == PLURAL
    ]
    assert schedules == [("ADDED", 1), ("MODIFIED", 2)], processed
    assert ("cronjobs", "ADDED", 1) not in processed, processed


def test_a_pending_one_time_job_deleted_by_hand_comes_back_and_fires_once(
    start_operator, cluster, database_url
):
    start_operator()
    run_at = (datetime.now(UTC) + timedelta(seconds=12)).isoformat()
    cluster.apply("once", {"type": "schedule", "runAt": run_at})
    cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    (job,) = cluster.jobs("one-time")
    cluster.batch.delete_namespaced_job(
        job.metadata.name, cluster.namespace, propagation_policy="Background"
    )
    cluster.wait_status("once", lambda s: s.get("phase") == "Completed", timeout=60)
    assert len(list_runs(engine_for(database_url))) == 1
