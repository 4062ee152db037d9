"""Fault scenarios (`make faults`; not part of `make test`): each breaks something on purpose
while schedules fire, then the independent accounting checks every fire: lost 0, duplicated 0,
unexpected 0. Each prints its accounting line; docs/reliability.md keeps the table."""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.db.store import engine_for
from wfclock_devstack.accounting import Change, account

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


@pytest.mark.parametrize("outage", [int(os.environ.get("WFCLOCK_FAULT_OUTAGE_SECONDS", "150"))])
def test_postgres_stopped_during_fires_loses_no_fire(
    start_operator, cluster, database_url, postgres, outage
):
    """Postgres away for longer than a launcher's connect budget (60 s) and several of its Jobs'
    retries: when it is back, every fire within its deadline runs once and the rest are recorded
    as missed (latest policy: superseded)."""
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
    time.sleep(70)  # a fire with the database back
    end = datetime.now(UTC)
    report = settle_and_account(database_url, histories, end)
    assert report.launched >= len(histories) * 2
