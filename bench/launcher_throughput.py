"""Fires per second through the launcher service, against a bare psycopg INSERT … ON CONFLICT.

Both sides commit each fire on its own (autocommit, one statement per fire) on the same database:
the service locks and re-reads the schedule state, claims the fire key, inserts the run, updates
the state and notifies; the baseline inserts the same ledger rows into a bare table with the same
unique key. The service gets what a CronJob pod gives it: the schedule id, the Job's scheduled
instant and the cron and zone the Job was registered for.
Usage: python bench/launcher_throughput.py [FIRES]
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import psycopg
from _support import EPOCH, database, every_minute_schedule
from wfclock.core.fires import fire_key_for
from wfclock.launcher import ClockFire, Registration, launch


def main(fires: int) -> None:
    with database() as url:
        schedule_id = every_minute_schedule(url)
        instants = [EPOCH + timedelta(minutes=i) for i in range(fires)]
        now = instants[-1] + timedelta(minutes=1)
        registration = Registration("* * * * *", "Europe/Berlin")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bare_fires (fire_key text PRIMARY KEY, schedule_id uuid, "
                "scheduled_for timestamptz, outcome text)"
            )
            start = time.perf_counter()
            for at in instants:
                conn.execute(
                    "INSERT INTO bare_fires VALUES (%s, %s, %s, 'launched') "
                    "ON CONFLICT (fire_key) DO NOTHING RETURNING fire_key",
                    (fire_key_for(schedule_id, at), schedule_id, at),
                ).fetchone()
            baseline = time.perf_counter() - start
            start = time.perf_counter()
            for at in instants:
                result = launch(conn, ClockFire(schedule_id, at, "bench", registration), now=now)
                assert result.outcome == "launched", result
            service = time.perf_counter() - start
            runs = conn.execute("SELECT count(*) FROM workflow_runs").fetchone()[0]
    assert runs == fires
    print(f"fires: {fires}")
    print(f"bare INSERT ... ON CONFLICT: {fires / baseline:,.0f} rows/s ({baseline:.2f} s)")
    print(f"launcher service:            {fires / service:,.0f} fires/s ({service:.2f} s)")
    print(f"ratio service/bare: {baseline / service:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
