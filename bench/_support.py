"""Shared set-up for the benchmarks: a throw-away Postgres with the schema and one schedule."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from wfclock.db.migrate import upgrade
from wfclock.db.store import ScheduleState, engine_for, upsert_schedule
from wfclock_devstack.postgres import temporary_server

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def database():
    server = temporary_server()
    server.start()
    try:
        url = server.create_database("bench")
        upgrade(url)
        yield url
        engine_for(url).dispose()
    finally:
        server.discard()


def every_minute_schedule(url: str) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    upsert_schedule(
        engine_for(url),
        ScheduleState(
            schedule_id=schedule_id,
            tenant="bench",
            namespace="bench",
            name="bench",
            workflow_id=uuid.uuid4(),
            workflow_version=1,
            trigger_type="recurring",
            run_at=None,
            cron="* * * * *",
            timezone="Europe/Berlin",
            status="scheduled",
            missed_fires="latest",
            catch_up_window_seconds=3600,
            generation=1,
            registered_kind="CronJob",
            registered_name="bench-cron",
            next_fire_at=None,
        ),
        published_at=EPOCH - timedelta(days=1),
    )
    return schedule_id
