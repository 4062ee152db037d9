"""`wfclock backfill`: launch every fire a schedule would have produced in a window, once each.

Every fire goes through the launcher with its own fire key, so running the same backfill again,
or a backfill overlapping fires that already happened, launches nothing new.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from wfclock.db.migrate import sqlalchemy_url
from wfclock.firetime import next_fire_times, parse_cron
from wfclock.launcher import ClockFire, LaunchResult, UnknownSchedule, launch


def fires_between(schedule: dict, begin: datetime, end: datetime) -> list[datetime]:
    """The schedule's fires in (begin, end]."""
    if schedule["trigger_type"] == "schedule":
        run_at = schedule["run_at"]
        return [run_at] if begin < run_at <= end else []
    spec = parse_cron(schedule["cron"])
    fires: list[datetime] = []
    cursor = begin
    while True:
        batch = next_fire_times(spec, schedule["timezone"], cursor, 500)
        fires.extend(f for f in batch if f <= end)
        if not batch or batch[-1] >= end:
            return fires
        cursor = batch[-1]


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
    conninfo = sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        schedule = cur.execute(
            "SELECT * FROM workflow_schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
        conn.commit()
        if schedule is None:
            raise UnknownSchedule(f"no schedule with id {schedule_id} in workflow_schedules")
        fires = fires_between(
            schedule, begin - timedelta(microseconds=1), end - timedelta(microseconds=1)
        )
        if dry_run:
            return [(fire, "would launch") for fire in fires]
        results = []
        for fire in fires:
            result: LaunchResult = launch(conn, ClockFire(schedule_id, fire, source), now=now)
            results.append(
                (fire, f"{result.outcome}" + (f" ({result.reason})" if result.reason else ""))
            )
        return results
