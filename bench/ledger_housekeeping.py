"""The fire ledger at 1,000,000 rows, before and after migration 0002, in one run.

Two databases get the same ledger under the schema of revision 0001; one is then upgraded to 0002
(timed). Each operation runs on both, in alternating rounds (the machine is shared, so its load
falls on both alike): a metrics scrape (before 0002 it counts the whole ledger; after, it reads
the per-schedule fire counts), and a finished Job's look-up of its fire (before, a scan; after,
the index on the source). Fires through the launcher service run on the upgraded ledger against
a third database at the same (latest) revision with the same schedules and an empty ledger: the
launcher of today needs the latest revision's function, so it cannot run on 0001's schema, and
what the ledger's size costs a fire is the question. Last, a prune at 90 days' retention on the
upgraded ledger.

Ledger: 1,000 hourly schedules, each with ROWS/1000 fires four hours apart (about 166 days at
1,000,000 rows), one in twenty skipped, every fire delivered a minute after its instant.
Usage: python bench/ledger_housekeeping.py [ROWS]
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from wfclock.db import store
from wfclock.db.migrate import upgrade
from wfclock.launcher import ClockFire, Registration, launch
from wfclock_devstack.postgres import temporary_server

SCHEDULES = 1000
SPACING_HOURS = 4
LAUNCHES = 4000
RETENTION = timedelta(days=90)

# The scrape's query before 0002 (store.fire_counts then): every ledger row, joined and grouped.
SCRAPE_BEFORE = """
SELECT f.outcome, s.trigger_type, count(*) FROM workflow_schedule_fires f
JOIN workflow_schedules s ON f.schedule_id = s.schedule_id GROUP BY 1, 2
"""


ROUNDS = 15
LAUNCH_ROUNDS = 8  # of LAUNCHES / LAUNCH_ROUNDS fires each


def alternating(before, after, rounds: int = ROUNDS) -> tuple[float, float]:
    """Median seconds of `before()` and of `after()`, run in alternation after a warm-up."""
    before(), after()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for call, spent in ((before, times[0]), (after, times[1])):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def fill(url: str, rows: int, now: datetime) -> uuid.UUID:
    per_schedule = rows // SCHEDULES
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO workflow_schedules (schedule_id, tenant, namespace, name, workflow_id, "
            "workflow_version, trigger_type, cron, timezone, status, trigger_effective_from) "
            "SELECT gen_random_uuid(), 'bench', 'bench', 's' || i, gen_random_uuid(), 1, "
            "'recurring', '0 * * * *', 'UTC', 'scheduled', %s FROM generate_series(1, %s) i",
            (now - timedelta(days=1000), SCHEDULES),
        )
        conn.execute(
            "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome, "
            "reason, run_id, source, first_delivered_at, last_delivered_at) "
            "SELECT 'workflow-schedule-fire:' || s.schedule_id || ':' || k, s.schedule_id, at, "
            "CASE WHEN k %% 20 = 0 THEN 'skipped' ELSE 'launched' END, NULL, "
            "gen_random_uuid(), s.name || '-' || k, at + interval '1 minute', "
            "at + interval '1 minute' "
            "FROM workflow_schedules s, generate_series(1, %s) k, "
            "LATERAL (SELECT %s - make_interval(hours => k * %s) AS at) t",
            (per_schedule, now, SPACING_HOURS),
        )
        conn.execute("VACUUM ANALYZE")
        return conn.execute("SELECT schedule_id FROM workflow_schedules LIMIT 1").fetchone()[0]


def launcher(url: str, schedule_id: uuid.UUID, now: datetime):
    """A callable launching the next LAUNCHES / LAUNCH_ROUNDS fires at hours the ledger does not
    hold yet (between its fires, newest first)."""
    registration = Registration("0 * * * *", "UTC")
    instants = iter(now - timedelta(hours=k * SPACING_HOURS + 1) for k in range(LAUNCHES))
    conn = psycopg.connect(url, autocommit=True)

    def launch_some() -> None:
        for _ in range(LAUNCHES // LAUNCH_ROUNDS):
            fire = ClockFire(schedule_id, next(instants), "bench", registration)
            assert launch(conn, fire, now=now).outcome == "launched"

    return launch_some, conn


def main(rows: int) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    server = temporary_server()
    server.start()
    try:
        urls, schedules = [], []
        started = time.perf_counter()
        for name in ("before_0002", "after_0002"):
            urls.append(server.create_database(name))
            upgrade(urls[-1], "0001")
            schedules.append(fill(urls[-1], rows, now))
        filled = (time.perf_counter() - started) / 2
        started = time.perf_counter()
        upgrade(urls[1])
        migration = time.perf_counter() - started
        empty_url = server.create_database("empty_ledger")
        upgrade(empty_url, "0001")
        empty_schedule = fill(empty_url, 0, now)
        upgrade(empty_url)
        with psycopg.connect(urls[1], autocommit=True) as conn:
            conn.execute("ANALYZE")
        engines = [store.engine_for(url) for url in urls]
        expected = _scrape_before(engines[0])
        assert store.fire_counts(engines[1]) == expected, "0002 counted the ledger differently"

        scrape = alternating(
            lambda: _scrape_before(engines[0]), lambda: store.fire_counts(engines[1])
        )
        job = "s1-500"  # a fire in the middle of one schedule's history
        lookup = alternating(*(lambda e=e: store.latest_fire_for_job(e, job) for e in engines))
        (empty, empty_conn), (full, full_conn) = (
            launcher(url, schedule_id, now)
            for url, schedule_id in ((empty_url, empty_schedule), (urls[1], schedules[1]))
        )
        spent = alternating(empty, full, rounds=LAUNCH_ROUNDS - 1)  # + the warm-up round
        empty_conn.close(), full_conn.close()
        fires = [LAUNCHES / LAUNCH_ROUNDS / s for s in spent]

        expected[("launched", "recurring")] += LAUNCHES
        started = time.perf_counter()
        pruned = store.prune_fires(engines[1], older_than=now - RETENTION)
        prune = time.perf_counter() - started
        assert store.fire_counts(engines[1]) == expected  # pruning lowers no count
        for engine in engines:
            engine.dispose()
    finally:
        server.discard()

    ms = [f"{x * 1000:.2f} ms" for x in (*scrape, *lookup)]
    print(f"ledger: {rows:,} rows over {SCHEDULES:,} schedules, in each of two databases")
    print(f"metrics scrape (fire counts):  before 0002 {ms[0]}, after {ms[1]}, ", end="")
    print(f"ratio before/after {scrape[0] / scrape[1]:,.0f}")
    print(f"finished Job's fire look-up:   before 0002 {ms[2]}, after {ms[3]}, ", end="")
    print(f"ratio before/after {lookup[0] / lookup[1]:,.0f}")
    print(
        f"launcher service, fires/s:     empty ledger {fires[0]:,.0f}, {rows:,} rows "
        f"{fires[1]:,.0f}, ",
        end="",
    )
    print(f"ratio full/empty {fires[1] / fires[0]:.2f}")
    print(
        f"filling one ledger: {filled:.1f} s; migrations 0002 to the latest on it: {migration:.1f} s"
    )
    print(
        f"prune at {RETENTION.days} days: {pruned.rows:,} of {rows + LAUNCHES:,} rows in "
        f"{prune:.1f} s ({pruned.rows / prune:,.0f} rows/s)"
    )


def _scrape_before(engine) -> dict:
    with engine.connect() as conn:
        return {(o, t): n for o, t, n in conn.exec_driver_sql(SCRAPE_BEFORE)}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
