"""The launcher Job's entry point, kept importable for tests."""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg
from wfclock.core.fires import parse_instant, scheduled_for_from_job_name
from wfclock.db.urls import libpq_url
from wfclock.launcher import (
    ClockFire,
    FireNotDue,
    NotAFire,
    Registration,
    UnknownSchedule,
    launch,
)

EX_OK, EX_USAGE, EX_TEMPFAIL = 0, 2, 75

# How long one launcher keeps trying to connect (the database restarting, or out of connection
# slots at the top of the hour) before it exits 75 and leaves the retry to the Job: attempts
# spread out with full jitter, so a burst of fires does not return in step.
CONNECT_BUDGET_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 5.0
# Nothing may hang a fire: a dead TCP peer is noticed within about 25 s, a statement (or a lock
# it waits for) gives up after 30 s; both end in exit 75 and a retry.
CONNECTION_OPTIONS = {
    "connect_timeout": 10,
    "application_name": "wfclock-launcher",
    "autocommit": True,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "options": "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000",
}


class InputError(ValueError):
    pass


def fire_from_env(env: dict[str, str]) -> ClockFire:
    # What the Job was registered for: a one-time Job has no cron; a CronJob's Job carries its
    # cron and zone (when it does not, the launcher reads them from the schedule).
    cron, zone_name = env.get("WFCLOCK_CRON"), env.get("WFCLOCK_TIMEZONE")
    recurring = Registration(cron, zone_name) if cron and zone_name else None
    raw_id = env.get("WFCLOCK_SCHEDULE_ID", "")
    try:
        schedule_id = uuid.UUID(raw_id)
    except ValueError:
        raise InputError(f"WFCLOCK_SCHEDULE_ID={raw_id!r} is not a UUID") from None
    job_name = env.get("WFCLOCK_JOB_NAME", "")
    scheduled = env.get("WFCLOCK_SCHEDULED_FOR", "")
    if scheduled:
        try:
            return ClockFire(
                schedule_id, parse_instant(scheduled), job_name or "one-time", Registration()
            )
        except ValueError:
            raise InputError(
                f"WFCLOCK_SCHEDULED_FOR={scheduled!r} is not an RFC 3339 timestamp with an "
                "offset, e.g. 2026-03-08T14:00:00Z"
            ) from None
    if job_name:
        try:
            instant = scheduled_for_from_job_name(job_name, env.get("WFCLOCK_CRONJOB_NAME"))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return ClockFire(schedule_id, instant, job_name, recurring)
    raise InputError("set WFCLOCK_JOB_NAME (CronJob fires) or WFCLOCK_SCHEDULED_FOR (one-time)")


def conninfo(url: str) -> str:
    try:
        url = libpq_url(url)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InputError(f"WFCLOCK_DATABASE_URL is not a usable Postgres URL: {exc}") from None
    return url


def connect(url: str, budget: float, *, sleep=time.sleep, clock=time.monotonic):
    """A connection, trying again with jittered backoff while the budget lasts."""
    started, attempt = clock(), 0
    while True:
        try:
            return psycopg.connect(url, **CONNECTION_OPTIONS)
        except psycopg.OperationalError:
            attempt += 1
            delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.05 * 2**attempt))
            if clock() - started + delay > budget:
                raise
            sleep(delay)


def _budget(env: dict[str, str]) -> float:
    try:
        return max(0.0, float(env.get("WFCLOCK_CONNECT_BUDGET_SECONDS", CONNECT_BUDGET_SECONDS)))
    except ValueError:
        return CONNECT_BUDGET_SECONDS


def _fail(code: int, reason: str, key: str | None = None) -> int:
    print(json.dumps({"outcome": "error", "fireKey": key, "runId": None, "reason": reason}))
    print(f"launcher: {reason}", file=sys.stderr)
    return code


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    try:
        fire = fire_from_env(env)
        url = conninfo(env.get("WFCLOCK_DATABASE_URL", ""))
    except InputError as exc:
        return _fail(EX_USAGE, str(exc))
    try:
        with connect(url, _budget(env)) as conn:
            result = launch(conn, fire, now=datetime.now(UTC))
    except (UnknownSchedule, FireNotDue, NotAFire) as exc:
        return _fail(EX_USAGE, str(exc))
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _fail(EX_TEMPFAIL, f"database unavailable, retry later: {first_line}")
    print(result.as_json())
    return EX_OK
