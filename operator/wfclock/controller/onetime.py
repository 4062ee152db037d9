"""Releasing a due one-time Job, or recording that its runAt passed beyond the deadline."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from wfclock import tracing
from wfclock.controller import metrics
from wfclock.controller.accounting import account
from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.controller.reconciler import refresh_status, restore
from wfclock.controller.releases import Release
from wfclock.core.fires import fire_key_for, utc_iso
from wfclock.db import store

log = logging.getLogger("wfclock.operator")


def release(ctx: Context, entry: Release, now: datetime) -> None:
    """Releases a due one-time Job; when it is too late, the fire is accounted instead (recorded
    as missed in the ledger and the status, unless it was delivered after all).

    On time, the Job is released straight away: a pause, edit or delete already removed the
    entry from the queue, and the launcher re-checks the state row at fire time anyway.
    """
    with tracing.span(
        "wfclock.release",
        trace_key=fire_key_for(entry.uid, entry.run_at),
        schedule_id=entry.uid,
        namespace=entry.namespace,
        name=entry.name,
        scheduled_for=utc_iso(entry.run_at),
        job=entry.job_name,
    ) as span:
        span.set(outcome=_release(ctx, entry, now))


def _release(ctx: Context, entry: Release, now: datetime) -> str:
    if entry.from_state_row and not _row_still_current(ctx, entry):
        return "left to its reconcile"  # edited, paused or deleted while the operator was down
    lateness = (now - entry.run_at).total_seconds()
    if lateness > entry.deadline_seconds:
        row = store.get_schedule(ctx.engine, uuid.UUID(entry.uid))
        if row is None or row["deleted_at"] or row["status"] != "scheduled":
            return "not due any more"
        if row["run_at"] == entry.run_at and account(ctx, row, now):
            metrics.MISSED.inc()
            refresh_status(ctx, entry.namespace, entry.name)
        return "past its deadline"
    if ctx.kube.release_job(entry.namespace, entry.job_name):
        metrics.RELEASE_LAG.observe(max(lateness, 0))
        message = f"released Job {entry.job_name} ({lateness:.1f}s after runAt)"
        ctx.kube.event_later(ref_of(entry), "Normal", "Released", message)
        return "released"
    log.warning("one-time Job %s/%s is gone; restoring it", entry.namespace, entry.job_name)
    restore(ctx, entry.namespace, entry.name)
    return "restored"


def preload(ctx: Context) -> int:
    """At start, before any schedule is resumed: every pending one-time release from one query
    of the state table, so a restart is ready (nothing due is forgotten) as soon as it has read
    the table, not once kopf has resumed every schedule. Returns how many were queued."""
    queued = 0
    for row in store.registered_schedules(ctx.engine, ctx.settings.namespaces):
        if row["trigger_type"] != "schedule" or row["status"] != "scheduled":
            continue
        entry = Release(
            row["run_at"],
            str(row["schedule_id"]),
            row["namespace"],
            row["name"],
            row["registered_name"],
            row["starting_deadline_seconds"],
            from_state_row=True,
        )
        ctx.releases.schedule(entry)
        queued += 1
    return queued


def _row_still_current(ctx: Context, entry: Release) -> bool:
    """Whether the schedule is the one its state row registered: same uid, same generation, not
    being deleted (a change made while the operator was down is registered by its resume,
    which queues the release anew; until then an old instant must not be released)."""
    body = ctx.kube.get_schedule(entry.namespace, entry.name)
    row = store.get_schedule(ctx.engine, uuid.UUID(entry.uid))
    if body is None or row is None or body["metadata"].get("deletionTimestamp"):
        return False
    metadata = body["metadata"]
    return metadata.get("uid") == entry.uid and metadata.get("generation", 1) == row["generation"]
