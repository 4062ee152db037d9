"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from wfclock.db.migrate import upgrade
from wfclock.db.store import ScheduleState, engine_for, upsert_schedule
from wfclock_devstack.postgres import temporary_server

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def serve_migrated(server):
    """Starts `server` with the migrated template database that `database_url` copies."""
    server.start()
    template = server.create_database("wfclock_template")
    upgrade(template)
    engine_for(template).dispose()
    return server


@pytest.fixture(scope="session")
def postgres():
    server = serve_migrated(temporary_server())
    yield server
    server.discard()


@contextlib.contextmanager
def migrated_database(postgres, name: str):
    """A migrated, empty database `name` (a copy of the session's template); dropped after."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE wfclock_template')
    url = postgres.url(name)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres) -> str:
    """A migrated, empty database of its own for each test."""
    with migrated_database(postgres, f"t{os.getpid()}_{next(_counter)}") as url:
        yield url


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url) as connection:
        yield connection


@pytest.fixture
def engine(database_url):
    return engine_for(database_url)


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_state(**overrides) -> ScheduleState:
    values = dict(
        schedule_id=uuid.uuid4(),
        tenant="acme",
        namespace="acme",
        name="nightly",
        workflow_id=uuid.UUID("0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"),
        workflow_version=3,
        trigger_type="recurring",
        run_at=None,
        cron="0 * * * *",
        timezone="Europe/Berlin",
        status="scheduled",
        missed_fires="latest",
        catch_up_window_seconds=3600,
        generation=1,
        registered_kind="CronJob",
        registered_name="wfs-nightly",
        next_fire_at=None,
    )
    values.update(overrides)
    return ScheduleState(**values)


def one_time_state(run_at: datetime, **overrides) -> ScheduleState:
    return make_state(
        trigger_type="schedule",
        run_at=run_at,
        cron=None,
        timezone="UTC",
        registered_kind="Job",
        **overrides,
    )


@pytest.fixture
def add_schedule(engine):
    def add(
        state: ScheduleState | None = None, *, effective_from: datetime = NOW - timedelta(days=1)
    ):
        state = state or make_state()
        upsert_schedule(engine, state, published_at=effective_from)
        return state

    return add


@pytest.fixture
def python_env(database_url) -> dict[str, str]:
    """Environment for running `python -m launcher_job` / `wfclock` as real processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")}
    env["WFCLOCK_DATABASE_URL"] = database_url
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env
