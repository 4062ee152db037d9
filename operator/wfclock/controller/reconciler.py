"""What the handlers do, independent of kopf. A reconcile, in order:

1. read the state row (the durable truth of what was registered and what fired);
2. parse the spec as published; an invalid one stops the schedule and says why (`_invalid`);
3. keep the launcher pods' database Secret (the tenant's own login) in the namespace;
4. register: the child, then the state row, then older children (`registration`);
5. answer a run-now request (`runnow`), once per request id;
6. derive the status from the state row and the ledger (`core.status`).

A delete marks the state row deleted before the children go; a finished fire's Job refreshes the
status and posts what the fire did.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from wfclock import tracing
from wfclock.controller import metrics, runnow
from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.controller.owed import account_change
from wfclock.controller.registration import register_one_time, register_recurring
from wfclock.controller.spec import parse_schedule, published_at
from wfclock.core.accounting import deadline
from wfclock.core.builders import Schedule
from wfclock.core.model import SpecError
from wfclock.core.names import SCHEDULE_UID_LABEL, schedule_name_of
from wfclock.core.runcontrol import TRACEPARENT_ANNOTATION
from wfclock.core.status import FirePolicy, end_reason, invalid_status, status_for
from wfclock.db import store

# A Job that finished longer ago than this (seen again after an operator restart) gets no Event:
# its fire was reported when it happened.
FIRE_EVENT_WINDOW = timedelta(minutes=10)
# How long a reconcile waits for a one-time release under way before judging its fire missed.
RELEASE_WAIT_SECONDS = 10


def traced(work, ctx: Context, meta: dict, spec: dict, status: dict) -> dict:
    """`work` (a reconcile) in a span of its own, a child of the schedule's
    `wfclock.dev/traceparent` annotation when it has one: the fires the operator launches during
    it (catch-up, run-now) are its children."""
    annotations = meta.get("annotations") or {}
    with tracing.span(
        "wfclock.reconcile",
        parent=annotations.get(TRACEPARENT_ANNOTATION),
        schedule_id=meta["uid"],
        namespace=meta.get("namespace"),
        name=meta.get("name"),
        generation=meta.get("generation", 1),
    ) as span:
        new_status = work(ctx, meta, spec, status)
        ready = [c for c in new_status.get("conditions") or [] if c.get("type") == "Ready"]
        if ready:
            span.set(ready=ready[0].get("status"), reason=ready[0].get("reason"))
        return new_status


def reconcile(ctx: Context, meta: dict, spec: dict, status: dict, *, resumed=False) -> dict:
    """Brings children, state row and status in line with the spec; returns the new status.
    `resumed`: the first reconcile after a start, which writes nothing that is already so."""
    uid = uuid.UUID(meta["uid"])
    generation = meta.get("generation", 1)
    previous = store.get_schedule(ctx.engine, uid)
    try:
        schedule = parse_schedule(ctx, meta, spec, previous)
    except SpecError as error:
        return _invalid(ctx, meta, status, previous, error)
    keep_launcher_secret(ctx, schedule.namespace, schedule.spec.tenant)
    register = register_recurring if schedule.recurring else register_one_time
    row = register(ctx, schedule, previous, generation, resumed=resumed)
    row = _missed_while_down(ctx, row)
    run_now = runnow.answer(ctx, meta, status, row)
    new_status = _status(ctx, schedule, row, generation, status.get("conditions") or [])
    if run_now:
        new_status["runNow"] = run_now
    return new_status


def _missed_while_down(ctx: Context, row: dict) -> dict:
    """A one-time schedule still scheduled whose runAt passed beyond its deadline (the operator
    was down across it): its miss is recorded here, before the status is derived. The release
    queue records it too, in a thread of its own; were this reconcile to derive the status from
    the row as it was before, kopf would write Scheduled over the release's Missed, for good.
    Whichever of the two records the miss, both statuses then say Missed."""
    # A function-level import: accounting → launcherpods → reconciler.
    from wfclock.controller.accounting import account

    if row["trigger_type"] != "schedule" or row["status"] != "scheduled":
        return row
    now = ctx.now()
    if now - row["run_at"] <= deadline(row):
        return row
    # A release that took the entry on time may be releasing the Job right now: read before
    # its patch lands, the Job looks suspended (not active) and the fire it is about to
    # deliver would be recorded missed. Wait for it; one taken from here on is late too.
    # Still releasing after the wait: the release records the miss itself if there is one.
    # Either way the status is derived from the row as it is now, not as read before the wait.
    idle = ctx.releases is None or ctx.releases.wait_idle(
        str(row["schedule_id"]), RELEASE_WAIT_SECONDS
    )
    if idle and account(ctx, row, now):
        metrics.MISSED.inc()
    return store.get_schedule(ctx.engine, row["schedule_id"]) or row


def answer_run_now(ctx: Context, meta: dict, spec: dict, status: dict) -> dict:
    """Only the run-now annotation changed: answer it and refresh the status from the state
    row, registering nothing (a schedule never registered, deleted or invalid takes the whole
    reconcile, which answers it too)."""
    uid = uuid.UUID(meta["uid"])
    row = store.get_schedule(ctx.engine, uid)
    if row is None or row["deleted_at"] is not None or row["status"] == "disabled":
        return reconcile(ctx, meta, spec, status)
    try:
        schedule = parse_schedule(ctx, meta, spec, row)
    except SpecError:
        return reconcile(ctx, meta, spec, status)
    run_now = runnow.answer(ctx, meta, status, row)
    generation = meta.get("generation", 1)
    new_status = _status(ctx, schedule, row, generation, status.get("conditions") or [])
    if run_now:
        new_status["runNow"] = run_now
    return new_status


def keep_launcher_secret(ctx: Context, namespace: str, tenant: str, *, force=False) -> None:
    """The Secret the namespace's launcher pods read: the tenant's own login, or (tenant logins
    off) a copy of a configured Secret."""
    settings = ctx.settings
    if ctx.tenants is not None:
        url = ctx.tenants.url_for(tenant)
        data = {settings.database_credentials_key: url}
        ctx.kube.ensure_secret(namespace, settings.database_credentials_name, data, force=force)
    elif settings.database_credentials_source:
        ctx.kube.copy_secret(
            settings.database_credentials_source,
            namespace,
            settings.database_credentials_name,
            force=force,
        )


def fire_policy(ctx: Context, row: dict) -> FirePolicy:
    """The calendars a recurring schedule references and its launched fires, from Postgres (the
    same the launcher decides from)."""
    if row["trigger_type"] != "recurring":
        return FirePolicy()
    calendars = store.calendars_of(ctx.engine, row["namespace"], list(row.get("calendars") or []))
    launched = (
        store.clock_launches(ctx.engine, row["schedule_id"])
        if row.get("max_fires") is not None
        else 0
    )
    return FirePolicy(calendars, launched)


def _status(ctx: Context, schedule: Schedule, row: dict, generation: int, previous: list) -> dict:
    cron = schedule.spec.trigger.spec if schedule.recurring else None
    shown = ctx.settings.recent_fires
    history = store.fire_history(ctx.engine, row["schedule_id"], shown)
    policy = fire_policy(ctx, row)
    return status_for(row, cron, generation, previous, ctx.now(), history, shown, policy)


def has_ended(ctx: Context, row: dict) -> bool:
    """A running recurring schedule whose bounds are reached (its next reconcile ends it)."""
    if row["trigger_type"] != "recurring" or row["status"] not in ("scheduled", "paused"):
        return False
    if row.get("max_fires") is None and row.get("active_until") is None:
        return False
    launched = fire_policy(ctx, row).launched
    grace = end_grace(row)
    return end_reason(row["max_fires"], row["active_until"], launched, ctx.now(), grace) is not None


def end_grace(row: dict) -> timedelta:
    """How long after activeUntil its last fire may still be delivered (deadline, jitter)."""
    return deadline(row) + timedelta(seconds=60)


def _invalid(ctx: Context, meta: dict, status: dict, previous, error: SpecError) -> dict:
    """An invalid spec registers nothing; a schedule that was valid before stops firing."""
    uid = meta["uid"]
    registered = previous is not None and previous["deleted_at"] is None
    if registered:
        published = published_at(meta, ctx.now())
        store.disable_schedule(
            ctx.engine,
            uuid.UUID(uid),
            str(error),
            published_at=published,
            generation=meta.get("generation", 1),
        )
        # The fires the valid registration owed before the edit that no Job recorded: recorded
        # now as refused (disabled). The disabled row keeps its trigger, so a failure here is
        # retried with the reconcile, and the sweep (which walks disabled rows) records them too.
        row = store.get_schedule(ctx.engine, uuid.UUID(uid))
        if row is not None and row["status"] == "disabled":
            account_change(ctx, row, ctx.now(), store.ledger_horizon(ctx.engine), limit=None)
        cronjobs, _ = ctx.kube.owned(meta["namespace"], uid)
        for cronjob in cronjobs:
            ctx.kube.suspend_cronjob(meta["namespace"], cronjob.metadata.name)
    if ctx.releases is not None:
        ctx.releases.forget(uid)
    if ctx.shifted is not None:
        ctx.shifted.forget(uid)
    ctx.kube.event(ref_of(meta), "Warning", error.reason, str(error))
    metrics.RECONCILES.labels(result="invalid").inc()
    previous_conditions = status.get("conditions") or []
    generation = meta.get("generation", 1)
    new_status = invalid_status(
        error.reason, str(error), generation, previous_conditions, ctx.now()
    )
    # A registered schedule answers from its (now disabled) state row, which records the
    # refusal; one never registered has none and refuses from the status alone.
    disabled = registered and previous["status"] not in ("completed", "failed")
    run_now = runnow.answer(
        ctx, meta, {**status, "lastError": str(error)}, previous if disabled else None
    )
    if run_now:
        new_status["runNow"] = run_now
    return new_status


def refresh_status(ctx: Context, namespace: str, name: str) -> None:
    """Re-derives a schedule's status from its state row (after a fire, a release, a miss)."""
    body = ctx.kube.get_schedule(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    row = store.get_schedule(ctx.engine, uuid.UUID(body["metadata"]["uid"]))
    if row is None or row["deleted_at"] or row["status"] == "disabled":
        return
    previous_status = body.get("status") or {}
    if has_ended(ctx, row):  # its last fire is in: the reconcile ends it
        restore(ctx, namespace, name)
        return
    try:
        schedule = parse_schedule(ctx, body["metadata"], body["spec"], row)
    except SpecError:
        return
    generation = previous_status.get("observedGeneration") or 1
    status = _status(ctx, schedule, row, generation, previous_status.get("conditions") or [])
    ctx.kube.patch_status(namespace, name, status)


def restore(ctx: Context, namespace: str, name: str) -> None:
    """Re-derives what a schedule should have registered and puts it back (a child deleted,
    suspended or edited by hand): the same reconcile as for a change of the spec."""
    body = ctx.kube.get_schedule(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    status = reconcile(ctx, body["metadata"], body["spec"], body.get("status") or {})
    ctx.kube.patch_status(namespace, name, status)


def delete(ctx: Context, meta: dict) -> None:
    """Marks the state row deleted first (in-flight fires are refused), then removes children."""
    uid = meta["uid"]
    store.mark_deleted(ctx.engine, uuid.UUID(uid))
    # The fires it owed until now that no Job recorded yet: recorded as refused (deleted). A
    # failure is retried with the whole delete (the deleted row still names its trigger).
    row = store.get_schedule(ctx.engine, uuid.UUID(uid))
    if row is not None:
        account_change(ctx, row, ctx.now(), store.ledger_horizon(ctx.engine), limit=None)
    if ctx.releases is not None:
        ctx.releases.forget(uid)
    if ctx.shifted is not None:
        ctx.shifted.forget(uid)
    cronjobs, jobs = ctx.kube.owned(meta["namespace"], uid)
    for cronjob in cronjobs:
        ctx.kube.delete_cronjob(meta["namespace"], cronjob.metadata.name)
    for job in jobs:
        ctx.kube.delete_job(meta["namespace"], job.metadata.name)


def report_finished_job(ctx: Context, job: dict, created: datetime) -> None:
    """A fire's Job finished: post what the fire did (from the ledger) and refresh the status."""
    labels = job["metadata"]["labels"]
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    schedule = schedule_name_of(job["metadata"])
    owner = {"name": schedule, "namespace": namespace, "uid": labels[SCHEDULE_UID_LABEL]}
    if ctx.now() - created < FIRE_EVENT_WINDOW:
        fire = store.latest_fire_for_job(ctx.engine, name)
        if fire is None:
            message = f"Job {name} finished without recording a fire"
            ctx.kube.event(owner, "Warning", "FireFailed", message)
        elif fire["outcome"] == "launched":
            message = f"Job {name} launched run {fire['run_id']}"
            ctx.kube.event(owner, "Normal", "Fired", message)
        elif fire["outcome"] == "buffered":
            message = f"Job {name}'s fire is buffered: {fire['reason']}"
            ctx.kube.event(owner, "Normal", "FireBuffered", message)
        else:
            message = f"Job {name} started no run: {fire['reason']}"
            ctx.kube.event(owner, "Normal", "FireSkipped", message)
    refresh_status(ctx, namespace, schedule)
