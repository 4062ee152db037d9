"""The `catchUp` missed-fire policy: fires missed within the window are launched, each once."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from wfclock import tracing
from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.core.builders import Schedule
from wfclock.core.fires import fire_key_for, fires_between, utc_iso
from wfclock.launcher import ClockFire, launch

log = logging.getLogger("wfclock.operator")


def catch_up(ctx: Context, schedule: Schedule, row: dict, now: datetime) -> None:
    """Launches every fire missed within the window through the launcher (its fire key makes a
    second catch-up of the same fire a duplicate, never a second run)."""
    # From where the ledger is known complete (the accounting's watermark), not from the last
    # launched fire: an earlier fire that failed is owed too. Recorded ones come back duplicate.
    window_start = now - timedelta(seconds=schedule.spec.catchUpWindowSeconds)
    begin = max(window_start, row["accounted_until"], row["trigger_effective_from"])
    missed = fires_between(row, begin, now)
    if not missed:
        return
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        for fire in missed:
            request = ClockFire(uuid.UUID(schedule.uid), fire, "catch-up")
            with tracing.span(
                "wfclock.catch-up",
                trace_key=fire_key_for(schedule.uid, fire),
                schedule_id=schedule.uid,
                scheduled_for=utc_iso(fire),
            ) as span:
                result = launch(conn, request, now=now)
                span.set(outcome=result.outcome, run_id=result.run_id)
            log.info("catch-up fire %s: %s", utc_iso(fire), result.outcome)
    fired = ", ".join(utc_iso(f) for f in missed)
    ctx.kube.event(ref_of(schedule), "Normal", "CaughtUp", f"launched missed fires {fired}")
