"""Fault scenarios (`make faults`; not part of `make test`): each breaks something on purpose
while schedules fire, then the independent accounting checks every fire: lost 0, duplicated 0,
unexpected 0. Each prints its accounting line; docs/reliability.md keeps the table."""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.db.store import engine_for
from wfclock_devstack.accounting import Change, account, describe

pytestmark = pytest.mark.faults

ZONES = ["UTC", "Asia/Kolkata", "Asia/Tokyo", "Africa/Nairobi"]
ENV = {
    "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "1",
    "WFCLOCK_ACCOUNTING_INTERVAL_SECONDS": "5",
}


def settle_and_account(database_url, histories, end, wait: float = 45, limit: float = 120):
    """Waits for every fire up to `end` to be recorded, then accounts; prints the line."""
    time.sleep(wait)
    deadline = time.monotonic() + limit
    while not (report := account(database_url, histories, end, timedelta(seconds=15))).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    sys.__stderr__.write(f"\naccounting: {report.line()}\n")  # past the capture
    if not report.ok:
        sys.__stderr__.write(describe(database_url, report))
    assert report.ok, f"{report.line()}: {report.lost + report.duplicated + report.unexpected}"
    return report


def apply_every_minute(cluster, histories, policy: str) -> None:
    for i, zone in enumerate(ZONES):
        body = cluster.apply(
            f"{policy.lower()}-{i}",
            {"type": "recurring", "cron": "* * * * *", "timezone": zone},
            missedFires=policy,
            startingDeadlineSeconds=300,
            catchUpWindowSeconds=3600,
        )
        histories[uuid.UUID(body["metadata"]["uid"])] = [Change(datetime.now(UTC), body["spec"])]


def outages() -> list[int]:
    """Seconds Postgres stays away: 1 minute and 15 minutes (longer than a Job's retries and
    every fire's deadline) unless WFCLOCK_FAULT_OUTAGE_SECONDS lists others ("60,900")."""
    raw = os.environ.get("WFCLOCK_FAULT_OUTAGE_SECONDS", "60,900")
    return [int(value) for value in raw.split(",") if value.strip()]


def seconds_to_account(database_url, histories, until, limit: float = 900) -> float:
    """How long until every fire up to `until` is in the ledger (launched, or recorded with its
    reason): the time to recover after the fault ends."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            report = account(database_url, histories, until, timedelta(seconds=15))
            # Only a fire not recorded yet can still come; a run too many stays.
            if report.ok or report.duplicated or report.unexpected:
                break
        except psycopg.OperationalError:
            pass  # the database is still starting
        time.sleep(1)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "outage",
    [pytest.param(s, id=f"{s}s", marks=pytest.mark.timeout(s + 1500)) for s in outages()],
)
def test_postgres_stopped_during_fires_loses_no_fire(
    start_operator, cluster, database_url, postgres, outage
):
    """Postgres away during fires, for 1 minute (within a launcher's connect budget and its Job's
    retries) and for 15 minutes (beyond both, and beyond every fire's 300 s deadline): when it is
    back, every fire within its deadline runs once and the rest are recorded as missed (latest
    policy: superseded; catchUp: caught up), never silently lost."""
    start_operator(**ENV)
    histories: dict[uuid.UUID, list[Change]] = {}
    apply_every_minute(cluster, histories, "latest")
    apply_every_minute(cluster, histories, "catchUp")
    for name in cluster.list():
        cluster.wait_status(name["metadata"]["name"], lambda s: s.get("phase") == "Scheduled")
    time.sleep(max(0, 65 - datetime.now(UTC).second))  # a fire with the database up first
    engine_for(database_url).dispose()
    postgres.stop()
    try:
        time.sleep(outage)
    finally:
        postgres.start()
    back = datetime.now(UTC)
    recovered = seconds_to_account(database_url, histories, back)
    time.sleep(max(0, 70 - (datetime.now(UTC) - back).total_seconds()))  # a fire after it
    end = datetime.now(UTC)
    report = settle_and_account(database_url, histories, end)
    sys.__stderr__.write(
        f"postgres stopped {outage}s: {report.line()}; every fire up to its return accounted "
        f"{recovered:.0f}s after Postgres returned\n"
    )
    assert report.launched >= len(histories) * 2
