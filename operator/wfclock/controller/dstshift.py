"""Shifted fires: the fire a daylight-saving policy makes after a gap (a local time that does not
exist), which the CronJob controller never creates. One heap for every schedule's next shifted
fire (the one-time release queue, `releases.ReleaseQueue`, with a launch instead of a release),
rebuilt by every registration; at its time the fire is launched in-process through the launcher,
as a catch-up fire is, by its own key (`wfclock.core.dst`), so a second launch is a duplicate.

A fire not launched within the schedule's starting deadline (the operator was down) is left to
the accounting sweep, which owes it like any fire (`core.fires.fires_between`)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.controller.releases import Release
from wfclock.core.dst import next_shifted_fire, shifted_fires_between
from wfclock.core.fires import utc_iso
from wfclock.core.firetime import parse_cron
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

log = logging.getLogger("wfclock.operator")
SOURCE = "dst-shift"


def next_entry(row: dict, now: datetime) -> Release | None:
    """The queue entry for the schedule's next shifted fire after `now` (None: no shifted fire
    within about 13 months, or nothing to launch: paused, deleted, not recurring)."""
    if row["trigger_type"] != "recurring" or row["status"] != "scheduled" or row["deleted_at"]:
        return None
    fire = next_shifted_fire(parse_cron(row["cron"]), row["timezone"], row.get("dst_policy"), now)
    if fire is None:
        return None
    deadline = row["starting_deadline_seconds"]
    return Release(fire, str(row["schedule_id"]), row["namespace"], row["name"], SOURCE, deadline)


def queue_next(ctx: Context, row: dict, now: datetime) -> None:
    """Puts the schedule's next shifted fire in the queue, or forgets the schedule there."""
    if ctx.shifted is None:
        return
    entry = next_entry(row, now)
    if entry is None:
        ctx.shifted.forget(str(row["schedule_id"]))
    else:
        ctx.shifted.schedule(entry)


def launch_shifted(ctx: Context, entry: Release, now: datetime) -> str | None:
    """Launches a due shifted fire through the launcher (which re-checks the schedule's state
    under its row lock) and queues the schedule's next one; returns the launcher's outcome, or
    None when the fire is no longer one of the registration's or its deadline passed."""
    row = store.get_schedule(ctx.engine, uuid.UUID(entry.uid))
    if row is None or row["trigger_type"] != "recurring":
        return None
    outcome = None
    current = shifted_fires_between(
        parse_cron(row["cron"]),
        row["timezone"],
        row.get("dst_policy"),
        entry.run_at - timedelta(seconds=1),
        entry.run_at,
    )
    on_time = (now - entry.run_at).total_seconds() <= entry.deadline_seconds
    if entry.run_at in current and on_time:
        registration = Registration(row["cron"], row["timezone"], row.get("dst_policy"))
        fire = ClockFire(row["schedule_id"], entry.run_at, SOURCE, registration)
        with ctx.engine.raw_connection() as raw:
            result = launch(raw.driver_connection, fire, now=now)
            raw.commit()
        outcome = result.outcome
        log.info("shifted fire %s of %s: %s", utc_iso(entry.run_at), entry.name, outcome)
        message = (
            f"launched the fire after the daylight-saving gap at {utc_iso(entry.run_at)} "
            f"(dstPolicy {row.get('dst_policy')}): {outcome}"
        )
        ctx.kube.event(ref_of(entry), "Normal", "ShiftedFire", message)
    queue_next(ctx, row, max(now, entry.run_at))
    return outcome
