"""`wfclock backfill`: launch every fire a schedule would have produced in a window, once each.

Every fire goes through the launcher with its own fire key, so running the same backfill again,
or a backfill overlapping fires that already happened, launches nothing new.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from wfclock.core.accounting import policy_dropped
from wfclock.core.dst import refusal
from wfclock.core.fires import fires_between, utc_iso
from wfclock.core.firetime import parse_cron
from wfclock.db.urls import libpq_url
from wfclock.launcher import ClockFire, LaunchResult, UnknownSchedule, launch


class FiresPruned(ValueError):
    """The window starts before the ledger's horizon: fires there may have been pruned."""


def backfill(
    url: str,
    schedule_id: uuid.UUID,
    begin: datetime,
    end: datetime,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    source: str = "backfill",
) -> list[tuple[datetime, str]]:
    """Fires in [begin, end), each through the launcher; `end` is capped at now."""
    now = now or datetime.now(UTC)
    end = min(end, now + timedelta(microseconds=1))  # never launch a fire before its time
    with psycopg.connect(libpq_url(url)) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        schedule = cur.execute(
            "SELECT * FROM workflow_schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
        conn.commit()
        if schedule is None:
            raise UnknownSchedule(f"no schedule with id {schedule_id} in workflow_schedules")
        horizon = cur.execute(
            "SELECT pruned_before FROM workflow_schedule_fires_horizon"
        ).fetchone()
        conn.commit()
        if horizon and begin < horizon["pruned_before"]:
            raise FiresPruned(
                f"--from {utc_iso(begin)} is before the fire ledger's horizon "
                f"{utc_iso(horizon['pruned_before'])}: fires before it may have been pruned, so "
                "whether they already ran is unknown; backfill from the horizon on"
            )
        fires = fires_between(
            schedule, begin - timedelta(microseconds=1), end - timedelta(microseconds=1)
        )
        if dry_run:
            dropped = policy_dropped(schedule, fires)
            return [(fire, _dry_run_outcome(schedule, fire, dropped)) for fire in fires]
        results = []
        for fire in fires:
            result: LaunchResult = launch(conn, ClockFire(schedule_id, fire, source), now=now)
            results.append(
                (fire, f"{result.outcome}" + (f" ({result.reason})" if result.reason else ""))
            )
        return results


def _dry_run_outcome(schedule: dict, fire: datetime, dropped: set[datetime]) -> str:
    """What the launcher would do with the fire as far as the schedule's time policy goes (its
    state refusals, a pause or a duplicate, are decided only by the launch itself)."""
    if fire not in dropped:
        return "would launch"
    spec = parse_cron(schedule["cron"])
    reason = refusal(spec, schedule["timezone"], schedule.get("dst_policy"), fire)
    return f"would skip ({reason})"
