"""The fire ledger's housekeeping: an index for look-ups by Job, fire counts a metrics scrape reads
without touching the ledger, and pruning by age that never lets a pruned key be claimed again."""

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import event
from wfclock.core.fires import fire_key_for
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch
from wfclock_devstack.processes import wait_until

from ..conftest import make_state, one_time_state

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
RETENTION = timedelta(days=90)


def hours_ago(hours: int) -> datetime:
    return NOW - timedelta(hours=hours)


def fire(conn, schedule_id, at, source="job"):
    return launch(conn, ClockFire(schedule_id, at, source), now=datetime.now(UTC))


def delivered_when_scheduled(conn) -> None:
    """Makes every fire look delivered a minute after its instant (as if it happened then)."""
    conn.execute(
        "UPDATE workflow_schedule_fires SET first_delivered_at = scheduled_for + interval '1 min', "
        "last_delivered_at = scheduled_for + interval '1 min'"
    )
    conn.commit()


@pytest.fixture
def hourly(add_schedule):
    """An hourly schedule whose trigger took effect a year ago."""
    return add_schedule(
        make_state(cron="0 * * * *", timezone="UTC"), effective_from=NOW - timedelta(days=365)
    )


def plan_of(engine, call) -> list[dict]:
    """The plan nodes Postgres chooses for every statement `call` runs on `engine`."""
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    nodes = []
    with engine.raw_connection() as raw:
        cursor = raw.cursor()
        for statement, parameters in statements:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            stack = [cursor.fetchone()[0][0]["Plan"]]
            while stack:
                node = stack.pop()
                nodes.append(node)
                stack.extend(node.get("Plans", []))
    return nodes


def bulk_fires(conn, schedule_id, count: int) -> None:
    """`count` ledger rows for one schedule, written directly (as years of fires would be)."""
    conn.execute(
        "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome, source) "
        "SELECT 'k' || i, %s, now() - make_interval(hours => i), 'launched', 'job-' || i "
        "FROM generate_series(1, %s) AS i",
        (schedule_id, count),
    )
    conn.execute("ANALYZE workflow_schedule_fires")
    conn.commit()


def test_look_ups_by_job_use_an_index(conn, engine, hourly):
    bulk_fires(conn, hourly.schedule_id, 20_000)
    nodes = plan_of(engine, lambda: store.latest_fire_for_job(engine, "job-42"))
    scans = [n for n in nodes if n.get("Relation Name") == "workflow_schedule_fires"]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert store.latest_fire_for_job(engine, "job-42")["outcome"] == "launched"


def test_a_metrics_scrape_reads_no_ledger_rows(conn, engine, hourly):
    bulk_fires(conn, hourly.schedule_id, 20_000)
    nodes = plan_of(engine, lambda: store.fire_counts(engine))
    relations = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert relations and "workflow_schedule_fires" not in relations
    assert store.fire_counts(engine) == {("launched", "recurring"): 20_000}


def ledger_counts(conn) -> dict:
    rows = conn.execute(
        "SELECT f.outcome, s.trigger_type, count(*) FROM workflow_schedule_fires f "
        "JOIN workflow_schedules s USING (schedule_id) GROUP BY 1, 2"
    ).fetchall()
    return {(outcome, kind): n for outcome, kind, n in rows}


def test_fire_counts_match_the_ledger_and_never_drop_when_it_is_pruned(
    conn, engine, add_schedule, hourly
):
    once = add_schedule(one_time_state(hours_ago(1), name="once"))
    for hours in (24 * 200, 24 * 100, 5, 4, 3):
        fire(conn, hourly.schedule_id, hours_ago(hours))
    fire(conn, hourly.schedule_id, hours_ago(3))  # a duplicate delivery: no new fire
    # A Job of the older cron, for an instant before the trigger changed to hourly: skipped
    # (one after the change would leave its key to the current trigger, recording nothing).
    stale = Registration("30 * * * *", "UTC")
    at = NOW - timedelta(days=365, minutes=30)
    result = launch(conn, ClockFire(hourly.schedule_id, at, "job", stale), now=datetime.now(UTC))
    assert result.outcome == "skipped" and result.reason.startswith("superseded"), result
    fire(conn, once.schedule_id, hours_ago(1))
    expected = {("launched", "recurring"): 5, ("skipped", "recurring"): 1}
    expected[("launched", "schedule")] = 1
    assert ledger_counts(conn) == expected == store.fire_counts(engine)
    delivered_when_scheduled(conn)
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 3
    assert store.fire_counts(engine) == expected  # fires recorded, not rows still kept


def test_prune_removes_fires_older_than_the_retention_and_keeps_each_schedules_latest(
    conn, engine, add_schedule, hourly
):
    quiet = add_schedule(
        make_state(cron="0 * * * *", timezone="UTC", name="quiet"),
        effective_from=NOW - timedelta(days=365),
    )
    for hours in (24 * 300, 24 * 200, 24 * 91, 24 * 89, 1):
        fire(conn, hourly.schedule_id, hours_ago(hours))
    for hours in (24 * 300, 24 * 200):  # a schedule that stopped firing long ago
        fire(conn, quiet.schedule_id, hours_ago(hours))
    delivered_when_scheduled(conn)
    dry = store.prune_fires(engine, older_than=NOW - RETENTION, dry_run=True)
    assert dry.rows == 4 and len(store.list_fires(engine)) == 7
    assert store.ledger_horizon(engine) is None  # a dry run promises nothing
    pruned = store.prune_fires(engine, older_than=NOW - RETENTION, batch=2)
    assert pruned.rows == 4 and pruned.horizon == NOW - RETENTION
    kept = {(f["schedule_id"], f["scheduled_for"]) for f in store.list_fires(engine)}
    assert kept == {
        (hourly.schedule_id, hours_ago(24 * 89)),
        (hourly.schedule_id, hours_ago(1)),
        (quiet.schedule_id, hours_ago(24 * 200)),  # its latest fire, however old
    }
    assert store.ledger_horizon(engine) == NOW - RETENTION
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 0


def horizon_row(conn) -> tuple:
    """The horizon row as last written: its row version (xmin), horizon and pruned rows."""
    row = conn.execute(
        "SELECT xmin::text, xmax::text, pruned_before, pruned_rows "
        "FROM workflow_schedule_fires_horizon"
    ).fetchone()
    conn.commit()
    return row


def test_a_prune_that_deletes_nothing_writes_nothing_until_the_horizon_lags_a_day(
    conn, engine, hourly
):
    """The operator prunes within a minute of its start: with nothing to delete it must not
    write (a restart costs nothing; not even a row lock), while the horizon still follows the
    retention day by day."""
    for hours in (24 * 200, 1):
        fire(conn, hourly.schedule_id, hours_ago(hours))
    delivered_when_scheduled(conn)
    slack = store.HORIZON_SLACK
    assert store.prune_fires(engine, older_than=NOW - RETENTION, slack=slack).rows == 1
    written = horizon_row(conn)
    assert written[1:] == ("0", NOW - RETENTION, 1)
    for later in (timedelta(minutes=5), timedelta(hours=23)):  # restarts, hourly prunes
        assert store.prune_fires(engine, older_than=NOW - RETENTION + later, slack=slack).rows == 0
        assert horizon_row(conn) == written
    lagging = NOW - RETENTION + timedelta(days=1, minutes=1)
    assert store.prune_fires(engine, older_than=lagging, slack=slack).rows == 0
    assert horizon_row(conn)[2:] == (lagging, 1)
    # By hand (`wfclock db prune`, no slack), the horizon it names is the one kept.
    by_hand = lagging + timedelta(minutes=5)
    assert store.prune_fires(engine, older_than=by_hand).horizon == by_hand
    assert horizon_row(conn)[2:] == (by_hand, 1)


def test_a_prune_that_deletes_raises_the_horizon_past_every_fire_it_deleted(conn, engine, hourly):
    """Within the day's slack too: a pruned fire above the horizon could be launched again."""
    fire(conn, hourly.schedule_id, hours_ago(24 * 200))
    fire(conn, hourly.schedule_id, hours_ago(1))
    delivered_when_scheduled(conn)
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 1
    just_older = NOW - RETENTION + timedelta(hours=1)  # pruned next, within the day's slack
    fire(conn, hourly.schedule_id, just_older)
    delivered_when_scheduled(conn)
    moved = NOW - RETENTION + timedelta(hours=2)
    assert store.prune_fires(engine, older_than=moved, slack=store.HORIZON_SLACK).rows == 1
    assert horizon_row(conn)[2:] == (moved, 2)
    with pytest.raises(psycopg.Error) as refused:
        fire(conn, hourly.schedule_id, just_older)  # its Job run again: refused, not a 2nd run
    assert refused.value.sqlstate == "WF001"
    conn.rollback()


def test_prune_keeps_a_fire_delivered_again_within_the_retention(conn, engine, hourly):
    fire(conn, hourly.schedule_id, hours_ago(24 * 200))
    fire(conn, hourly.schedule_id, hours_ago(1))
    delivered_when_scheduled(conn)
    fire(conn, hourly.schedule_id, hours_ago(24 * 200))  # its Job ran again just now
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 0
    assert len(store.list_fires(engine)) == 2


def test_a_pruned_fire_key_can_never_be_claimed_again(conn, engine, add_schedule, hourly):
    quiet = add_schedule(
        make_state(cron="0 * * * *", timezone="UTC", name="quiet"),
        effective_from=NOW - timedelta(days=365),
    )
    old, latest = hours_ago(24 * 200), hours_ago(24 * 150)
    for at in (old, hours_ago(1)):
        fire(conn, hourly.schedule_id, at)
    for at in (old, latest):
        fire(conn, quiet.schedule_id, at)
    delivered_when_scheduled(conn)
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 2
    runs = len(store.list_runs(engine))
    for schedule_id in (hourly.schedule_id, quiet.schedule_id):
        with pytest.raises(psycopg.Error) as refused:
            fire(conn, schedule_id, old)  # a Job of 200 days ago run again, or a backfill
        assert refused.value.sqlstate == "WF001"
        assert "older than the fire ledger's horizon" in str(refused.value)
        conn.rollback()
    never_fired = hours_ago(24 * 120)
    with pytest.raises(psycopg.Error):
        fire(conn, hourly.schedule_id, never_fired)  # whether it ran is no longer known
    conn.rollback()
    assert fire(conn, quiet.schedule_id, latest).outcome == "duplicate"  # kept: still a duplicate
    assert len(store.list_runs(engine)) == runs
    assert fire(conn, hourly.schedule_id, hours_ago(2)).outcome == "launched"  # newer: as ever


def test_below_the_horizon_a_fire_that_starts_no_run_is_still_recorded(conn, engine, hourly):
    old = hours_ago(24 * 200)
    fire(conn, hourly.schedule_id, old)
    fire(conn, hourly.schedule_id, hours_ago(1))
    delivered_when_scheduled(conn)
    assert store.prune_fires(engine, older_than=NOW - RETENTION).rows == 1
    store.update_schedule(engine, hourly.schedule_id, status="paused")
    runs = len(store.list_runs(engine))
    again = fire(conn, hourly.schedule_id, old)  # its Job run again while paused
    assert (again.outcome, again.reason) == ("skipped", "paused")
    assert len(store.list_runs(engine)) == runs


def test_prune_waits_for_a_fire_in_flight(conn, engine, database_url, hourly):
    fire(conn, hourly.schedule_id, hours_ago(24 * 200))
    fire(conn, hourly.schedule_id, hours_ago(1))
    delivered_when_scheduled(conn)
    with psycopg.connect(database_url) as in_flight:  # a delivery of the old fire, uncommitted
        in_flight.execute("SELECT 1")  # a transaction of its own, open until the commit below
        result = launch(
            in_flight,
            ClockFire(hourly.schedule_id, hours_ago(24 * 200), "job"),
            now=datetime.now(UTC),
        )
        assert result.outcome == "duplicate"
        done = []
        pruner = threading.Thread(
            target=lambda: done.append(store.prune_fires(engine, older_than=NOW - RETENTION))
        )
        pruner.start()
        time.sleep(0.5)
        assert done == []  # the prune waits for the delivery's transaction
        in_flight.commit()
    pruner.join(10)
    assert done and done[0].rows == 0  # delivered again just now: kept


def test_the_operator_prunes_the_ledger_on_its_interval(conn, engine, hourly):
    from wfclock.controller.housekeeping import LedgerPruner

    fire(conn, hourly.schedule_id, hours_ago(24 * 200))
    fire(conn, hourly.schedule_id, hours_ago(1))
    delivered_when_scheduled(conn)
    pruner = LedgerPruner(engine, retention_days=90, interval_seconds=0.2).start()
    try:
        wait_until(lambda: len(store.list_fires(engine)) == 1, 10, "the ledger to be pruned")
    finally:
        pruner.stop()
    assert store.ledger_horizon(engine) > NOW - RETENTION - timedelta(minutes=5)
    assert fire_key_for(hourly.schedule_id, hours_ago(1)) == store.list_fires(engine)[0]["fire_key"]
