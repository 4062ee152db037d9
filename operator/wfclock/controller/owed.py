"""The fires a registration owed before it moved on (its trigger edited, the schedule paused or
deleted) that no Job recorded: delivered by their keys as their late Jobs would be, so the
launcher records each with the reason the change gives, never leaving one silently owed
(issue 13's soak found such fires lost). The accounting sweep, a trigger change's registration
and a delete call it; `core.accounting.owed_before` says which fires."""

from __future__ import annotations

import logging
from datetime import datetime

from wfclock.controller.context import Context
from wfclock.core.accounting import owed_before
from wfclock.core.fires import fire_key_for, utc_iso
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

log = logging.getLogger("wfclock.accounting")


def ref(row: dict) -> dict:
    return {"name": row["name"], "namespace": row["namespace"], "uid": str(row["schedule_id"])}


def account_change(
    ctx: Context, row: dict, until: datetime, pruned_before: datetime | None
) -> tuple[datetime | None, bool]:
    """The fires the registration `row` owed before `until` (its trigger was edited or it was
    deleted then; see `owed_before`) that are not in the ledger are delivered now, each as its
    late Job would be and by its key: the launcher records each with the reason the change gives
    (superseded, paused, deleted), and a Job delivering later meets that record (a duplicate),
    never a second claim. `pruned_before`: the ledger's horizon (`store.ledger_horizon`).
    Returns the last fire looked at (None: none was owed) and whether any was recorded now."""
    fires = owed_before(row, until, pruned_before)
    keys = {fire: fire_key_for(row["schedule_id"], fire) for fire in fires}
    recorded = store.recorded_keys(ctx.engine, list(keys.values()))
    if all(key in recorded for key in keys.values()):
        return (fires[-1] if fires else None), False
    delivered = False
    skipped: dict[str, list[datetime]] = {}
    registration = Registration(row["cron"], row["timezone"], row.get("dst_policy"))
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        for fire in fires:
            if keys[fire] in recorded:
                continue
            request = ClockFire(row["schedule_id"], fire, "recovery", registration)
            result = launch(conn, request, now=ctx.now())
            conn.commit()
            delivered = True
            log.info(
                "fire %s of %s, owed before a change: %s %s",
                utc_iso(fire),
                row["name"],
                result.outcome,
                result.reason,
            )
            if result.outcome in ("skipped", "buffered"):
                skipped.setdefault(f"{result.outcome}: {result.reason}", []).append(fire)
    report_skipped(ctx, row, skipped)
    return fires[-1], delivered


def account_change_safely(ctx: Context, row: dict | None, until: datetime) -> None:
    """`account_change` for a registration that just moved on; a failure is logged and leaves
    the change itself in place."""
    if row is None:
        return
    try:
        account_change(ctx, row, until, store.ledger_horizon(ctx.engine))
    except Exception as exc:  # noqa: BLE001 - the change must go through regardless
        log.warning(
            "recording the fires %s/%s owed before its change failed: %s",
            row["namespace"],
            row["name"],
            exc,
        )


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
