"""Registering a schedule with Kubernetes and the state row, in the order that never leaves a
fire without a registration or a registration without a current state row:

1. the new child first (CronJob created or patched in place; one-time Job created suspended),
2. then the state row (from here the launcher refuses fires planned under an older trigger),
   and the older trigger's fires that no Job recorded yet are recorded with that refusal,
3. then older children go (a one-time Job of an earlier runAt, a CronJob after a type switch).
"""

from __future__ import annotations

import uuid

from wfclock.controller.catchup import catch_up
from wfclock.controller.context import Context
from wfclock.controller.dstshift import queue_next as queue_next_shifted
from wfclock.controller.events import announce
from wfclock.controller.owed import account_change_safely
from wfclock.controller.releases import Release
from wfclock.core.builders import Schedule, build_cronjob, build_one_time_job, child_name
from wfclock.core.dst import next_fire as policy_next_fire
from wfclock.core.fires import fire_key_for
from wfclock.core.model import RecurringTrigger
from wfclock.core.names import REGISTRATION_LABEL
from wfclock.db import store


def schedule_state(
    schedule: Schedule, generation: int, kind: str, name: str, next_fire
) -> store.ScheduleState:
    """The state row a registration writes."""
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
        run_at=None if recurring else trigger.instant,
        cron=trigger.cron if recurring else None,
        timezone=trigger.timezone,
        status="paused" if spec.paused else "scheduled",
        missed_fires=spec.missedFires,
        catch_up_window_seconds=spec.catchUpWindowSeconds,
        starting_deadline_seconds=spec.startingDeadlineSeconds,
        generation=generation,
        registered_kind=kind,
        registered_name=name,
        next_fire_at=next_fire,
        pause_reason=spec.pauseReason if spec.paused else None,
        overlap_policy=spec.overlapPolicy,
        dst_policy=trigger.dstPolicy if recurring else None,
    )


def _children_to_replace(ctx: Context, schedule: Schedule, previous, kind: str, name: str):
    """The registrations that may need replacing: none when the schedule is new or keeps its
    registration (the common case, which then costs no list calls), else everything it owns."""
    if previous is None or (
        previous["registered_kind"] == kind and previous["registered_name"] == name
    ):
        return [], []
    return ctx.kube.owned(schedule.namespace, schedule.uid)


def _is_one_time(job) -> bool:
    return job.metadata.labels.get(REGISTRATION_LABEL) == "one-time"


def _account_old_trigger(ctx: Context, previous, row: dict) -> None:
    """A trigger change (cron, zone, type) moved the state row on: the old trigger's fires from
    before it that no Job recorded are recorded now (superseded), never left silently owed."""
    if previous is not None and row["trigger_effective_from"] != previous["trigger_effective_from"]:
        account_change_safely(ctx, previous, row["trigger_effective_from"])


def register_recurring(ctx: Context, schedule: Schedule, previous, generation: int) -> dict:
    trigger = schedule.spec.trigger
    now = ctx.now()
    body = build_cronjob(schedule, ctx.settings)
    name = body["metadata"]["name"]
    cronjobs, jobs = _children_to_replace(ctx, schedule, previous, "CronJob", name)
    action = ctx.kube.create_or_patch_cronjob(body)
    next_fire = (
        None
        if schedule.spec.paused
        else policy_next_fire(trigger.spec, trigger.timezone, trigger.dstPolicy, now)
    )
    state = schedule_state(schedule, generation, "CronJob", name, next_fire)
    row = store.upsert_schedule(ctx.engine, state, published_at=schedule.published_at or now)
    _account_old_trigger(ctx, previous, row)
    for job in jobs:
        if _is_one_time(job):
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    for cronjob in cronjobs:
        if cronjob.metadata.name != name:
            ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    if ctx.releases:
        ctx.releases.forget(schedule.uid)
    queue_next_shifted(ctx, row, now)
    announce(ctx, schedule, previous, action, f"CronJob {name}")
    if schedule.spec.missedFires == "catchUp" and not schedule.spec.paused:
        catch_up(ctx, schedule, row, now)
    return row


def register_one_time(ctx: Context, schedule: Schedule, previous, generation: int) -> dict:
    trigger = schedule.spec.trigger
    run_at = trigger.instant
    now = ctx.now()
    name = child_name(schedule)
    cronjobs, jobs = _children_to_replace(ctx, schedule, previous, "Job", name)
    # A one-time Job whose fire is done or in the ledger is never made again.
    same_fire_done = (
        previous is not None
        and previous["run_at"] == run_at
        and (
            previous["status"] in ("completed", "failed")
            or store.fire_recorded(ctx.engine, fire_key_for(schedule.uid, run_at))
        )
    )
    if not same_fire_done:
        for cronjob in cronjobs:  # a type switch: the CronJob must not fire any more
            ctx.kube.suspend_cronjob(schedule.namespace, cronjob.metadata.name)
        created = ctx.kube.create_job_if_absent(build_one_time_job(schedule, ctx.settings))
    state = schedule_state(schedule, generation, "Job", name, run_at)
    row = store.upsert_schedule(ctx.engine, state, published_at=schedule.published_at or now)
    _account_old_trigger(ctx, previous, row)
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    if ctx.shifted is not None:
        ctx.shifted.forget(schedule.uid)
    for job in jobs:
        if _is_one_time(job) and job.metadata.name != name:
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    if ctx.releases is not None:
        if row["status"] == "scheduled":
            deadline = schedule.spec.startingDeadlineSeconds
            ctx.releases.schedule(
                Release(run_at, schedule.uid, schedule.namespace, schedule.name, name, deadline)
            )
        else:
            ctx.releases.forget(schedule.uid)
    if not same_fire_done:
        announce(ctx, schedule, previous, "created" if created else "kept", f"Job {name}")
    return row
