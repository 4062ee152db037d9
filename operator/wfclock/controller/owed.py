"""The fires a registration owed before it moved on (its trigger or runAt edited, the schedule
paused, made invalid or deleted) that no Job recorded: delivered by their keys as their late
Jobs would be, so the launcher records each with the reason the change gives, never leaving one
silently owed (issue 13's soak found such fires lost). The accounting sweep, a trigger change's
registration, an invalid edit and a delete call it; `core.accounting.owed_before` says which
fires."""

from __future__ import annotations

import logging
from datetime import datetime

from wfclock import tracing
from wfclock.controller.context import Context
from wfclock.core.accounting import MAX_FIRES_PER_SWEEP, owed_before
from wfclock.core.fires import fire_key_for, utc_iso
from wfclock.db import store
from wfclock.launcher import ClockFire, LaunchResult, Registration, launch

log = logging.getLogger("wfclock.accounting")


def ref(row: dict) -> dict:
    return {"name": row["name"], "namespace": row["namespace"], "uid": str(row["schedule_id"])}


def account_change(
    ctx: Context,
    row: dict,
    until: datetime,
    pruned_before: datetime | None,
    limit: int | None = MAX_FIRES_PER_SWEEP,
) -> tuple[datetime | None, bool]:
    """The fires the registration `row` owed before `until` (its trigger was edited or it was
    deleted then; see `owed_before`) that are not in the ledger are delivered now, each as its
    late Job would be and by its key: the launcher records each with the reason the change gives
    (superseded, paused, disabled, deleted), and a Job delivering later meets that record (a
    duplicate), never a second claim. `pruned_before`: the ledger's horizon
    (`store.ledger_horizon`). At most `limit` fires (None: all), the earliest. Returns the last
    fire looked at (None: none was owed) and whether any was recorded now."""
    fires = owed_before(row, until, pruned_before, limit)
    pending = pending_fires(ctx, row, fires)
    if not pending:
        return (fires[-1] if fires else None), False
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        skipped = deliver_owed(ctx, conn, row, pending, commit=conn.commit)
    report_skipped(ctx, row, skipped)
    return fires[-1], True


def launch_traced(conn, request: ClockFire, now: datetime) -> LaunchResult:
    """A fire the operator delivers itself (owed by a change, or not recorded by its Job), in a
    `wfclock.recovery` span whose trace is the fire's."""
    key = fire_key_for(request.schedule_id, request.scheduled_for)
    with tracing.span(
        "wfclock.recovery",
        trace_key=key,
        schedule_id=request.schedule_id,
        scheduled_for=utc_iso(request.scheduled_for),
    ) as span:
        result = launch(conn, request, now=now)
        span.set(outcome=result.outcome, reason=result.reason, run_id=result.run_id)
        return result


def pending_fires(ctx: Context, row: dict, fires: list[datetime]) -> list[datetime]:
    """Those of `fires` the ledger does not hold yet."""
    keys = {fire: fire_key_for(row["schedule_id"], fire) for fire in fires}
    recorded = store.recorded_keys(ctx.engine, list(keys.values()))
    return [fire for fire in fires if keys[fire] not in recorded]


def deliver_owed(
    ctx: Context, conn, row: dict, fires: list[datetime], commit=None
) -> dict[str, list[datetime]]:
    """Delivers `fires` (owed by the registration `row`, not in the ledger) on the psycopg
    connection `conn`: each committed on its own by `commit`, or (None) all in the transaction
    `conn` is in (a delivery that meets a record is a duplicate and counted). Returns the fires recorded without a run, by outcome and reason,
    for `report_skipped`."""
    skipped: dict[str, list[datetime]] = {}
    registration = Registration(row["cron"], row["timezone"], row.get("dst_policy"))
    for fire in fires:
        request = ClockFire(row["schedule_id"], fire, "recovery", registration)
        result = launch_traced(conn, request, ctx.now())
        if commit is not None:
            commit()
        log.info(
            "fire %s of %s, owed before a change: %s %s",
            utc_iso(fire),
            row["name"],
            result.outcome,
            result.reason,
        )
        if result.outcome in ("skipped", "buffered"):
            skipped.setdefault(f"{result.outcome}: {result.reason}", []).append(fire)
    return skipped


def report_skipped(ctx: Context, row: dict, skipped: dict[str, list[datetime]]) -> None:
    """One Event per reason for the fires this sweep recorded without a run (a long pause can
    leave hundreds: one Event names how many, the first and the last)."""
    for what, fires in skipped.items():
        outcome, reason = what.split(": ", 1)
        span = utc_iso(fires[0]) + (f" ... {utc_iso(fires[-1])}" if len(fires) > 1 else "")
        count = f"{len(fires)} fires" if len(fires) > 1 else "the fire"
        message = f"{count} of {span} {outcome}: {reason}"
        kind = "FireBuffered" if outcome == "buffered" else "FireSkipped"
        ctx.kube.event(ref(row), "Normal", kind, message)
