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
