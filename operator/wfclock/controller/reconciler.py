"""What the handlers do, independent of kopf: validate, register, keep state and status in step."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from wfclock.backfill import fires_between
from wfclock.controller import metrics
from wfclock.controller.builders import (
    KIND_LABEL,
    Schedule,
    build_cronjob,
    build_one_time_job,
    child_name,
    condition,
)
from wfclock.controller.kube import Kube
from wfclock.controller.releases import Release, ReleaseQueue
from wfclock.db import store
from wfclock.firetime import next_fire_after, utc_iso
from wfclock.launcher import ClockFire, launch, parse_instant
from wfclock.model import (
    Problem,
    RecurringTrigger,
    Rules,
    SpecError,
    validate_spec,
)
from wfclock.schedule_view import next_fires_view
from wfclock.settings import Settings

log = logging.getLogger("wfclock.operator")


@dataclass
class Context:
    settings: Settings
    engine: Engine
    kube: Kube
    releases: ReleaseQueue | None = None
    clock: object = lambda: datetime.now(UTC)

    def now(self) -> datetime:
        return self.clock()


def ref_of(obj) -> dict:
    """What an Event names: a schedule's name, namespace and uid (from metadata or an object)."""
    if isinstance(obj, dict):
        return {"name": obj["name"], "namespace": obj["namespace"], "uid": obj["uid"]}
    return {"name": obj.name, "namespace": obj.namespace, "uid": obj.uid}


def _accepted_run_at(previous: dict | None, spec: dict) -> bool:
    """A one-time runAt that was accepted before stays acceptable once it is due."""
    if not previous or previous["trigger_type"] != "schedule":
        return False
    try:
        return parse_instant(str((spec.get("trigger") or {}).get("runAt"))) == previous["run_at"]
    except ValueError:
        return False


def published_at(ctx: Context, meta: dict) -> datetime:
    """When the spec was published: "runAt in the future" is judged at that moment, not when a
    busy operator gets to it. A first generation was published at creation; for later edits the
    operator cannot know the moment, so it uses now."""
    created = meta.get("creationTimestamp")
    if meta.get("generation", 1) == 1 and created:
        return min(ctx.now(), parse_instant(str(created)))
    return ctx.now()


def parse(ctx: Context, meta: dict, spec: dict, previous: dict | None) -> Schedule:
    settings = ctx.settings
    rules = Rules(
        now=published_at(ctx, meta),
        edition=settings.edition,
        minimum_interval=timedelta(minutes=settings.minimum_interval_minutes),
    )
    parsed = validate_spec(spec, rules, check_run_at=not _accepted_run_at(previous, spec))
    tenant = ctx.kube.namespace_tenant(meta["namespace"])
    if tenant != parsed.tenant:
        raise SpecError(
            [
                Problem(
                    "spec.tenant",
                    f"{parsed.tenant!r} does not match namespace {meta['namespace']!r}, whose "
                    f"wfclock.dev/tenant label is {tenant!r}; schedules may only start "
                    "workflows of their namespace's tenant",
                )
            ],
            reason="TenantMismatch",
        )
    return Schedule(meta["name"], meta["namespace"], meta["uid"], parsed)


def reconcile(ctx: Context, meta: dict, spec: dict, status: dict) -> dict:
    """Brings children, state row and status in line with the spec; returns the new status."""
    uid = uuid.UUID(meta["uid"])
    generation = meta.get("generation", 1)
    previous = store.get_schedule(ctx.engine, uid)
    try:
        schedule = parse(ctx, meta, spec, previous)
    except SpecError as error:
        return _invalid(ctx, meta, status, previous, error)
    if ctx.settings.database_secret_source:
        ctx.kube.copy_secret(
            ctx.settings.database_secret_source,
            schedule.namespace,
            ctx.settings.database_secret_name,
        )
    if schedule.recurring:
        row = _register_recurring(ctx, schedule, previous, generation)
    else:
        row = _register_one_time(ctx, schedule, previous, generation)
    return status_for(ctx, schedule, row, generation, status.get("conditions") or [])


def _state(schedule: Schedule, generation: int, kind: str, name: str, next_fire):
    spec, trigger = schedule.spec, schedule.spec.trigger
    recurring = isinstance(trigger, RecurringTrigger)
    return store.ScheduleState(
        schedule_id=uuid.UUID(schedule.uid),
        tenant=spec.tenant,
        namespace=schedule.namespace,
        name=schedule.name,
        workflow_id=spec.workflowId,
        workflow_version=spec.workflowVersion,
        trigger_type=trigger.type,
        run_at=None if recurring else trigger.runAt.astimezone(UTC),
        cron=trigger.cron if recurring else None,
        timezone=trigger.timezone,
        status="paused" if spec.paused else "scheduled",
        missed_fires=spec.missedFires,
        catch_up_window_seconds=spec.catchUpWindowSeconds,
        generation=generation,
        registered_kind=kind,
        registered_name=name,
        next_fire_at=next_fire,
    )


def _children_to_replace(ctx: Context, schedule: Schedule, previous, kind: str, name: str):
    """The registrations that may need replacing: none when the schedule is new or keeps its
    registration (the common case, which then costs no list calls), else everything it owns."""
    if previous is None or (
        previous["registered_kind"] == kind and previous["registered_name"] == name
    ):
        return [], []
    return ctx.kube.owned(schedule.namespace, schedule.uid)


def _register_recurring(ctx: Context, schedule: Schedule, previous, generation: int) -> dict:
    trigger = schedule.spec.trigger
    now = ctx.now()
    body = build_cronjob(schedule, ctx.settings)
    name = body["metadata"]["name"]
    cronjobs, jobs = _children_to_replace(ctx, schedule, previous, "CronJob", name)
    pending_one_time = [j for j in jobs if j.metadata.labels.get(KIND_LABEL) == "one-time"]
    # The new registration first, then the state row (which makes the launcher refuse anything
    # planned under the old trigger), then the old registrations go.
    action = ctx.kube.create_or_patch_cronjob(body)
    next_fire = (
        None if schedule.spec.paused else next_fire_after(trigger.spec, trigger.timezone, now)
    )
    row = store.upsert_schedule(
        ctx.engine, _state(schedule, generation, "CronJob", name, next_fire), now=now
    )
    for job in pending_one_time:
        ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    for cronjob in cronjobs:
        if cronjob.metadata.name != name:
            ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    if ctx.releases:
        ctx.releases.forget(schedule.uid)
    _announce(ctx, schedule, previous, action, f"CronJob {name}")
    if schedule.spec.missedFires == "catchUp" and not schedule.spec.paused:
        _catch_up(ctx, schedule, row, now)
    return row


def _catch_up(ctx: Context, schedule: Schedule, row: dict, now: datetime) -> None:
    """Launches every fire missed within the window, each once through its fire key."""
    window_start = now - timedelta(seconds=schedule.spec.catchUpWindowSeconds)
    begin = max(filter(None, [window_start, row["last_fire_at"], row["trigger_effective_from"]]))
    missed = fires_between(row, begin, now)
    if not missed:
        return
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        for fire in missed:
            result = launch(conn, ClockFire(uuid.UUID(schedule.uid), fire, "catch-up"), now=now)
            log.info("catch-up fire %s: %s", utc_iso(fire), result.outcome)
    ctx.kube.event(
        ref_of(schedule),
        "Normal", "CaughtUp", f"launched missed fires {', '.join(utc_iso(f) for f in missed)}",
    )  # fmt: skip


def _register_one_time(ctx: Context, schedule: Schedule, previous, generation: int) -> dict:
    trigger = schedule.spec.trigger
    run_at = trigger.runAt.astimezone(UTC)
    now = ctx.now()
    name = child_name(schedule)
    cronjobs, jobs = _children_to_replace(ctx, schedule, previous, "Job", name)
    same_fire_done = (
        previous is not None
        and previous["run_at"] == run_at
        and previous["status"] in ("completed", "failed")
    )
    if not same_fire_done:
        for cronjob in cronjobs:  # a type switch: the CronJob must not fire any more
            ctx.kube.suspend_cronjob(schedule.namespace, cronjob.metadata.name)
        created = ctx.kube.create_job_if_absent(build_one_time_job(schedule, ctx.settings))
    row = store.upsert_schedule(
        ctx.engine, _state(schedule, generation, "Job", name, run_at), now=now
    )
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    for job in jobs:
        if job.metadata.labels.get(KIND_LABEL) == "one-time" and job.metadata.name != name:
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    if row["status"] in ("scheduled",) and ctx.releases is not None:
        ctx.releases.schedule(
            Release(run_at, schedule.uid, schedule.namespace, schedule.name, name,
                    schedule.spec.startingDeadlineSeconds)
        )  # fmt: skip
    elif ctx.releases is not None:
        ctx.releases.forget(schedule.uid)
    if not same_fire_done:
        _announce(ctx, schedule, previous, "created" if created else "kept", f"Job {name}")
    return row


def _announce(ctx: Context, schedule: Schedule, previous, action: str, what: str) -> None:
    ref = ref_of(schedule)
    if previous is None:
        ctx.kube.event(ref, "Normal", "Registered", f"registered {what}")
    elif schedule.spec.paused and previous["status"] != "paused":
        ctx.kube.event(ref, "Normal", "Paused", f"paused {what}")
    elif not schedule.spec.paused and previous["status"] == "paused":
        ctx.kube.event(ref, "Normal", "Resumed", f"resumed {what}")
    elif previous["registered_name"] != what.split()[-1] or action == "updated":
        ctx.kube.event(ref, "Normal", "Rescheduled", f"{action} {what}")


def _invalid(ctx: Context, meta: dict, status: dict, previous, error: SpecError) -> dict:
    """An invalid spec registers nothing; a schedule that was valid before stops firing."""
    uid = meta["uid"]
    if previous is not None and previous["deleted_at"] is None:
        store.update_schedule(
            ctx.engine, uuid.UUID(uid), status="disabled", next_fire_at=None, last_error=str(error)
        )
        cronjobs, jobs = ctx.kube.owned(meta["namespace"], uid)
        for cronjob in cronjobs:
            ctx.kube.suspend_cronjob(meta["namespace"], cronjob.metadata.name)
    if ctx.releases is not None:
        ctx.releases.forget(uid)
    ctx.kube.event(ref_of(meta), "Warning", error.reason, str(error))
    metrics.RECONCILES.labels(result="invalid").inc()
    generation = meta.get("generation", 1)
    return {
        "phase": "Invalid",
        "observedGeneration": generation,
        "nextFireAt": None,
        "nextFires": [],
        "lastError": str(error),
        "conditions": [
            condition("Ready", False, error.reason, str(error), generation,
                      status.get("conditions") or [], ctx.now()),
        ],
    }  # fmt: skip


PHASES = {
    "scheduled": "Scheduled",
    "paused": "Paused",
    "completed": "Completed",
    "disabled": "Invalid",
}


def phase_for(row: dict) -> str:
    if row["status"] == "failed":
        return "Missed" if row["last_run_status"] == "missed" else "Failed"
    return PHASES[row["status"]]


def status_for(
    ctx: Context, schedule: Schedule | None, row: dict, generation: int, previous: list
) -> dict:
    """The status that reflects the state row (the durable truth) and the registration."""
    phase = phase_for(row)
    now = ctx.now()
    next_fires: list[dict] = []
    if phase == "Scheduled" and row["trigger_type"] == "recurring":
        spec = schedule.spec.trigger.spec if schedule else None
        if spec is not None:
            next_fires = next_fires_view(spec, row["timezone"], now, 5)
    elif phase == "Scheduled":
        next_fires = [{"at": utc_iso(row["run_at"]), "local": row["run_at"].isoformat()}]
    ready_reason = {"Scheduled": "Registered", "Paused": "Paused", "Completed": "Fired",
                    "Missed": "Missed", "Failed": "Failed", "Invalid": "InvalidSpec"}[phase]  # fmt: skip
    message = {
        "Scheduled": f"{row['registered_kind']} {row['registered_name']} is registered",
        "Paused": f"{row['registered_kind']} {row['registered_name']} is suspended",
        "Completed": "the one-time schedule fired; it never fires again",
        "Missed": row["last_error"] or "runAt passed beyond the deadline",
        "Failed": row["last_error"] or "failed",
        "Invalid": row["last_error"] or "invalid",
    }[phase]
    return {
        "phase": phase,
        "observedGeneration": generation,
        "registered": {"kind": row["registered_kind"], "name": row["registered_name"]},
        "nextFireAt": next_fires[0]["at"] if next_fires else None,
        "nextFires": next_fires,
        "lastFireAt": utc_iso(row["last_fire_at"]) if row["last_fire_at"] else None,
        "lastRunId": str(row["last_run_id"]) if row["last_run_id"] else None,
        "lastResult": row["last_run_status"],
        "lastError": row["last_error"],
        "conditions": [
            condition("Ready", phase in ("Scheduled", "Paused", "Completed"), ready_reason,
                      message, generation, previous, now),
        ],
    }  # fmt: skip


def release(ctx: Context, entry: Release, now: datetime) -> None:
    """Releases a due one-time Job, or marks the schedule Missed when it is too late.

    On time, the Job is released straight away: a pause, edit or delete already removed the
    entry from the queue, and the launcher re-checks the state row at fire time anyway.
    """
    ref = ref_of(entry)
    lateness = (now - entry.run_at).total_seconds()
    if lateness > entry.deadline_seconds:
        row = store.get_schedule(ctx.engine, uuid.UUID(entry.uid))
        if (
            row is None
            or row["deleted_at"]
            or row["status"] != "scheduled"
            or row["run_at"] != entry.run_at
        ):
            return
        message = (
            f"runAt {utc_iso(entry.run_at)} passed {int(lateness)}s ago, beyond the "
            f"{entry.deadline_seconds}s deadline; no run was started"
        )
        store.update_schedule(
            ctx.engine, row["schedule_id"], status="failed", last_run_status="missed",
            last_error=message, next_fire_at=None,
        )  # fmt: skip
        ctx.kube.event(ref, "Warning", "Missed", message)
        metrics.MISSED.inc()
        refresh_status(ctx, entry.namespace, entry.name)
        return
    if ctx.kube.release_job(entry.namespace, entry.job_name):
        metrics.RELEASE_LAG.observe(max(lateness, 0))
        ctx.kube.event_later(
            ref,
            "Normal",
            "Released",
            f"released Job {entry.job_name} ({lateness:.1f}s after runAt)",
        )
    else:
        log.warning(
            "one-time Job %s/%s is gone; the next reconcile recreates it",
            entry.namespace,
            entry.job_name,
        )


def refresh_status(ctx: Context, namespace: str, name: str) -> None:
    """Re-derives a schedule's status from its state row (after a fire, a release, a miss)."""
    body = ctx.kube.get_schedule(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    row = store.get_schedule(ctx.engine, uuid.UUID(body["metadata"]["uid"]))
    if row is None or row["deleted_at"] or row["status"] == "disabled":
        return
    previous_status = body.get("status") or {}
    try:
        schedule = parse(ctx, body["metadata"], body["spec"], row)
    except SpecError:
        return
    status = status_for(ctx, schedule, row, previous_status.get("observedGeneration") or 1,
                        previous_status.get("conditions") or [])  # fmt: skip
    ctx.kube.patch_status(namespace, name, status)


def delete(ctx: Context, meta: dict) -> None:
    """Marks the state row deleted first (in-flight fires are refused), then removes children."""
    uid = meta["uid"]
    store.mark_deleted(ctx.engine, uuid.UUID(uid))
    if ctx.releases is not None:
        ctx.releases.forget(uid)
    cronjobs, jobs = ctx.kube.owned(meta["namespace"], uid)
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(meta["namespace"], cronjob.metadata.name)
    for job in jobs:
        ctx.kube.delete_job(meta["namespace"], job.metadata.name)
