"""Registering a schedule with Kubernetes and the state row, in the order that never leaves a
fire without a registration or a registration without a current state row:

1. the new child first (CronJob created or patched in place; one-time Job created suspended),
2. then the state row (from here the launcher refuses fires planned under an older trigger),
   and, in the same transaction, the older trigger's fires that no Job recorded yet are
   recorded with that refusal (a failure undoes both, and kopf's retry does both again),
3. then older children go (a one-time Job of an earlier runAt, a CronJob after a type switch).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, replace
from datetime import timedelta

from wfclock.controller.catchup import catch_up
from wfclock.controller.context import Context
from wfclock.controller.dstshift import queue_next as queue_next_shifted
from wfclock.controller.events import announce
from wfclock.controller.owed import deliver_owed, pending_fires, report_skipped
from wfclock.controller.releases import Release
from wfclock.core.accounting import deadline, fires_at, owed_before
from wfclock.core.builders import (
    Schedule,
    build_cronjob,
    build_one_time_job,
    child_name,
    registration_digest,
    with_digest,
)
from wfclock.core.dst import next_fire as policy_next_fire
from wfclock.core.fires import fire_key_for
from wfclock.core.model import RecurringTrigger
from wfclock.core.names import REGISTRATION_LABEL, cronjob_name
from wfclock.core.status import end_reason
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
        calendars=list(trigger.calendars) if recurring else [],
        active_from=trigger.activeFrom if recurring else None,
        active_until=trigger.activeUntil if recurring else None,
        max_fires=trigger.maxFires if recurring else None,
        jitter_seconds=trigger.jitter_seconds if recurring else 0,
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


def row_is_current(previous, state: store.ScheduleState) -> bool:
    """Whether the state row already holds what the upsert of `state` would write (so the
    upsert would change nothing but its `updated_at`). A completed or failed one-time row keeps
    its outcome under an unchanged trigger, so its status, next fire and error are not
    compared."""
    if previous is None or previous["deleted_at"] is not None or not previous["enabled"]:
        return False
    fields = asdict(state)
    if previous["trigger_type"] == "schedule" and previous["status"] in ("completed", "failed"):
        del fields["status"], fields["next_fire_at"], fields["last_error"]
    return all(previous[key] == value for key, value in fields.items())


def _kept_on_resume(ctx: Context, kind: str, schedule: Schedule, name: str, digest) -> bool:
    """After a restart: whether the child exists as the restarted operator would write it
    (`digest` None: existing is enough, as for a one-time Job, which is never patched)."""
    if ctx.resume is None:
        return False
    found = ctx.resume.take(kind, schedule.namespace, name)
    return found is not None and (digest is None or found == digest)


def _gone_on_resume(ctx: Context, kind: str, schedule: Schedule, name: str) -> bool:
    """After a restart: whether the child was not there when the children were listed."""
    return ctx.resume is not None and ctx.resume.take(kind, schedule.namespace, name) is None


def _is_one_time(job) -> bool:
    return job.metadata.labels.get(REGISTRATION_LABEL) == "one-time"


def _write_state(ctx: Context, state: store.ScheduleState, previous, published_at) -> dict:
    """Writes the state row. When it moves the trigger on (cron, zone, type, a one-time
    runAt), the old trigger's fires from before the change that no Job recorded are recorded in
    the same transaction (superseded), never left silently owed: once the row holds the new
    trigger alone, nothing could find them again."""
    skipped: dict = {}

    def account_old_trigger(conn, row: dict) -> None:
        if row["trigger_effective_from"] == previous["trigger_effective_from"]:
            return
        horizon = store.ledger_horizon(ctx.engine)
        fires = owed_before(previous, row["trigger_effective_from"], horizon, limit=None)
        skipped.update(deliver_owed(ctx, conn, previous, pending_fires(ctx, previous, fires)))
        skipped.update(supersede_buffered(conn, row))

    row = store.upsert_schedule(  # a first registration has no old trigger to account for
        ctx.engine,
        state,
        published_at=published_at,
        then=None if previous is None else account_old_trigger,
    )
    report_skipped(ctx, row, skipped)
    return row


SUPERSEDED_WHILE_BUFFERED = (
    "superseded: the trigger changed and does not fire then (it waited for a running run)"
)


def supersede_buffered(conn, row: dict) -> dict[str, list]:
    """A fire the old trigger buffered at or after the change (its Job delivered it between the
    edit's publish time and this registration) is owed by the new trigger only if that fires
    then too: kept buffered when it does (same key), else recorded superseded now, while the
    row is held. The release, which knows no cron, would launch it under the new trigger.
    (A buffered fire from before the change is refused by the release itself.) Returns the
    fires recorded, by outcome and reason, for `report_skipped`."""
    skipped: dict[str, list] = {}
    for key, instant in store.buffered_fires(conn, row["schedule_id"]):
        if instant >= row["trigger_effective_from"] and not fires_at(row, instant):
            store.skip_buffered_fire(conn, key, SUPERSEDED_WHILE_BUFFERED)
            skipped.setdefault(f"skipped: {SUPERSEDED_WHILE_BUFFERED}", []).append(instant)
    return skipped


def _ended(ctx: Context, schedule: Schedule, previous, now) -> str | None:
    """Why the recurring schedule has ended by its bounds (None: it runs)."""
    trigger = schedule.spec.trigger
    if trigger.maxFires is None and trigger.activeUntil is None:
        return None
    launched = store.clock_launches(ctx.engine, uuid.UUID(schedule.uid)) if previous else 0
    row = {
        "missed_fires": schedule.spec.missedFires,
        "catch_up_window_seconds": schedule.spec.catchUpWindowSeconds,
        "starting_deadline_seconds": schedule.spec.startingDeadlineSeconds,
        "jitter_seconds": trigger.jitter_seconds,
    }
    grace = deadline(row) + timedelta(seconds=60)
    return end_reason(trigger.maxFires, trigger.activeUntil, launched, now, grace)


def end_recurring(
    ctx: Context, schedule: Schedule, previous, generation: int, why: str, *, resumed=False
) -> dict:
    """A schedule past its bounds: the state row says it ended first (the launcher refuses
    every fire from here), then its CronJob goes; the row keeps its history. After a restart,
    one that ended before (its row says so, no CronJob of its own was listed) is left as is."""
    name = cronjob_name(schedule.name, schedule.uid)
    state = schedule_state(schedule, generation, "CronJob", name, None)
    state = replace(state, status="completed", end_reason=why)
    if (
        resumed
        and row_is_current(previous, state)
        and _gone_on_resume(ctx, "CronJob", schedule, name)
    ):
        return previous
    row = store.upsert_schedule(ctx.engine, state, published_at=schedule.published_at or ctx.now())
    cronjobs, jobs = ctx.kube.owned(schedule.namespace, schedule.uid)
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    for job in jobs:
        if _is_one_time(job):
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    if previous is None or previous["status"] != "completed":
        ctx.kube.event(
            {"name": schedule.name, "namespace": schedule.namespace, "uid": schedule.uid},
            "Normal",
            "Ended",
            f"the schedule ended: {why}; CronJob {name} removed",
        )
    return row


def register_recurring(
    ctx: Context, schedule: Schedule, previous, generation: int, *, resumed=False
) -> dict:
    trigger = schedule.spec.trigger
    now = ctx.now()
    why = _ended(ctx, schedule, previous, now)
    if why:
        return end_recurring(ctx, schedule, previous, generation, why, resumed=resumed)
    body = with_digest(build_cronjob(schedule, ctx.settings))
    name = body["metadata"]["name"]
    next_fire = (
        None
        if schedule.spec.paused
        else policy_next_fire(trigger.spec, trigger.timezone, trigger.dstPolicy, now)
    )
    state = schedule_state(schedule, generation, "CronJob", name, next_fire)
    if (
        resumed
        and row_is_current(previous, state)
        and _kept_on_resume(ctx, "CronJob", schedule, name, registration_digest(body))
    ):
        # A restart with nothing changed: the CronJob and the row are as they would be written.
        if ctx.releases is not None:  # empty, it may still hold one in flight
            ctx.releases.forget(schedule.uid)
        queue_next_shifted(ctx, previous, now)  # the queue is this process's: fill it again
        if schedule.spec.missedFires == "catchUp" and not schedule.spec.paused:
            catch_up(ctx, schedule, previous, now)
        return previous
    cronjobs, jobs = _children_to_replace(ctx, schedule, previous, "CronJob", name)
    action = ctx.kube.create_or_patch_cronjob(body)
    row = _write_state(ctx, state, previous, schedule.published_at or now)
    for job in jobs:
        if _is_one_time(job):
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    for cronjob in cronjobs:
        if cronjob.metadata.name != name:
            ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    if ctx.releases is not None:  # empty, it may still hold one in flight
        ctx.releases.forget(schedule.uid)
    queue_next_shifted(ctx, row, now)
    announce(ctx, schedule, previous, action, f"CronJob {name}")
    if schedule.spec.missedFires == "catchUp" and not schedule.spec.paused:
        catch_up(ctx, schedule, row, now)
    return row


def register_one_time(
    ctx: Context, schedule: Schedule, previous, generation: int, *, resumed=False
) -> dict:
    trigger = schedule.spec.trigger
    run_at = trigger.instant
    now = ctx.now()
    name = child_name(schedule)
    state = schedule_state(schedule, generation, "Job", name, run_at)
    if resumed and row_is_current(previous, state):
        done = previous["status"] in ("completed", "failed")
        if _kept_on_resume(ctx, "Job", schedule, name, None) or done:
            # A restart with nothing changed: the Job (or the outcome) and the row are there.
            _queue_release(ctx, schedule, previous, name)
            return previous
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
    row = _write_state(ctx, state, previous, schedule.published_at or now)
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(schedule.namespace, cronjob.metadata.name)
    if ctx.shifted is not None:
        ctx.shifted.forget(schedule.uid)
    for job in jobs:
        if _is_one_time(job) and job.metadata.name != name:
            ctx.kube.delete_job(schedule.namespace, job.metadata.name)
    _queue_release(ctx, schedule, row, name)
    if not same_fire_done:
        announce(ctx, schedule, previous, "created" if created else "kept", f"Job {name}")
    return row


def _queue_release(ctx: Context, schedule: Schedule, row: dict, name: str) -> None:
    if ctx.releases is None:
        return
    if row["status"] == "scheduled":
        deadline = schedule.spec.startingDeadlineSeconds
        run_at = schedule.spec.trigger.instant
        ctx.releases.schedule(
            Release(run_at, schedule.uid, schedule.namespace, schedule.name, name, deadline)
        )
    else:
        ctx.releases.forget(schedule.uid)
