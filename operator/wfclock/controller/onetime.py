"""Releasing a due one-time Job, or recording that its runAt passed beyond the deadline."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from wfclock.controller import metrics
from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.controller.reconciler import refresh_status
from wfclock.controller.releases import Release
from wfclock.core.fires import utc_iso
from wfclock.db import store

log = logging.getLogger("wfclock.operator")


def release(ctx: Context, entry: Release, now: datetime) -> None:
    """Releases a due one-time Job, or marks the schedule Missed when it is too late.

    On time, the Job is released straight away: a pause, edit or delete already removed the
    entry from the queue, and the launcher re-checks the state row at fire time anyway.
    """
    lateness = (now - entry.run_at).total_seconds()
    if lateness > entry.deadline_seconds:
        if _mark_missed(ctx, entry, lateness):
            refresh_status(ctx, entry.namespace, entry.name)
        return
    if ctx.kube.release_job(entry.namespace, entry.job_name):
        metrics.RELEASE_LAG.observe(max(lateness, 0))
        message = f"released Job {entry.job_name} ({lateness:.1f}s after runAt)"
        ctx.kube.event_later(ref_of(entry), "Normal", "Released", message)
    else:
        log.warning(
            "one-time Job %s/%s is gone; the next reconcile recreates it",
            entry.namespace,
            entry.job_name,
        )


def _mark_missed(ctx: Context, entry: Release, lateness: float) -> bool:
    """Records the miss unless the schedule changed meanwhile; True when it did."""
    row = store.get_schedule(ctx.engine, uuid.UUID(entry.uid))
    if row is None or row["deleted_at"] or row["status"] != "scheduled":
        return False
    if row["run_at"] != entry.run_at:
        return False
    message = (
        f"runAt {utc_iso(entry.run_at)} passed {int(lateness)}s ago, beyond the "
        f"{entry.deadline_seconds}s deadline; no run was started"
    )
    store.update_schedule(
        ctx.engine,
        row["schedule_id"],
        status="failed",
        last_run_status="missed",
        last_error=message,
        next_fire_at=None,
    )
    ctx.kube.event(ref_of(entry), "Warning", "Missed", message)
    metrics.MISSED.inc()
    return True
