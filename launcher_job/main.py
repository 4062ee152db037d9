"""The launcher Job's entry point, kept importable for tests."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime

import psycopg
from wfclock import tracing
from wfclock.core.fires import fire_key_for, parse_instant, scheduled_for_from_job_name
from wfclock.core.jitter import jitter_offset
from wfclock.db.urls import libpq_url
from wfclock.launcher import (
    ClockFire,
    FireNotDue,
    NotAFire,
    Registration,
    UnknownSchedule,
    launch,
)

# 70 (EX_SOFTWARE): an error the launcher does not know, a bug or a database in an unforeseen
# state. It is neither "retry" (75) nor "unusable input" (2), so the Job's backoff retries it
# like any failure (harmless: the fire key makes a retry a duplicate at worst), and a dashboard
# can tell it from an outage.
EX_OK, EX_USAGE, EX_SOFTWARE, EX_TEMPFAIL = 0, 2, 70, 75

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
    """The fire the Job delivers; `TRACEPARENT` (the W3C trace context, as set on the schedule's
    `wfclock.dev/traceparent` annotation) makes its run's trace a child of that one."""
    return dataclasses.replace(_fire_from_env(env), trace_parent=env.get("TRACEPARENT") or None)


def _fire_from_env(env: dict[str, str]) -> ClockFire:
    # What the Job was registered for: a one-time Job has no cron; a CronJob's Job carries its
    # cron and zone (when it does not, the launcher reads them from the schedule).
    cron, zone_name = env.get("WFCLOCK_CRON"), env.get("WFCLOCK_TIMEZONE")
    policy = env.get("WFCLOCK_DST_POLICY") or None
    recurring = Registration(cron, zone_name, policy) if cron and zone_name else None
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
            return psycopg.connect(url, **connection_options(url))
        except psycopg.OperationalError as exc:
            if not _worth_waiting(exc):
                raise
            attempt += 1
            delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.05 * 2**attempt))
            if clock() - started + delay > budget:
                raise
            sleep(delay)


def connection_options(url: str) -> dict:
    """The launcher's connection settings. The URL's own `options` (a search_path, a lower
    statement timeout) follow the launcher's defaults, so they win instead of being dropped."""
    own = psycopg.conninfo.conninfo_to_dict(url).get("options")
    if not own:
        return CONNECTION_OPTIONS
    return {**CONNECTION_OPTIONS, "options": f"{CONNECTION_OPTIONS['options']} {own}"}


def _worth_waiting(exc: psycopg.OperationalError) -> bool:
    """A server away, starting, or out of connection slots passes within seconds; a refused
    login or a missing database does not (a new pod brings a rotated password)."""
    state = getattr(exc, "sqlstate", None)
    return state is None or state in ("53300", "57P03") or state.startswith("08")


def _budget(env: dict[str, str]) -> float:
    try:
        return max(0.0, float(env.get("WFCLOCK_CONNECT_BUDGET_SECONDS", CONNECT_BUDGET_SECONDS)))
    except ValueError:
        return CONNECT_BUDGET_SECONDS


def database_now(conn) -> datetime:
    """The database's clock, which the launcher trusts over its own: the pod's node may be ahead
    or behind, and a skewed clock must neither refuse a due fire (behind) nor claim one early or
    misdate the run's `firedAt` and the next fire (ahead). One short round trip per fire."""
    return conn.execute("SELECT now()").fetchone()[0]


def _fail(code: int, reason: str, key: str | None = None) -> int:
    print(json.dumps({"outcome": "error", "fireKey": key, "runId": None, "reason": reason}))
    print(f"launcher: {reason}", file=sys.stderr)
    return code


class Terminated(Exception):
    """SIGTERM (the pod deleted, or its Job past its deadline) while the fire was under way."""


def raise_terminated(signum, frame) -> None:
    raise Terminated


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# SQLSTATEs, or their two-character classes, that a retry of the same pod can get past: the
# server is restarting, failing over, busy or out of a resource, or the transaction lost a race.
_RETRY_CLASSES = {"08", "40", "53", "55", "57", "58"}
_READ_ONLY = "25006"  # connected to a standby: a failover in progress, or a pooler's old target
_STATEMENT_TIMEOUT = "57014"
# A database that is not (or not yet) wfclock's: a missing table, column, function or schema.
_SCHEMA_STATES = {"42P01", "42703", "42883", "3F000"}
_PERMISSION_DENIED = "42501"
# Raised by the ledger's guard (migration 0002): the fire is older than what pruning removed.
_PRUNED = "WF001"


def database_failure(exc: psycopg.Error, url: str) -> tuple[int, str]:
    """The exit code and reason for a database error: 75 when a retry may succeed, 2 when the
    database at the URL cannot serve this launcher as configured, 70 for anything unforeseen."""
    state, first = exc.sqlstate, _first_line(exc)
    if state == _STATEMENT_TIMEOUT:
        return (
            EX_TEMPFAIL,
            f"the database did not answer within the statement timeout, retry later: {first}",
        )
    if state == _READ_ONLY:
        return (
            EX_TEMPFAIL,
            f"the database is read-only (a standby or a failover), retry later: {first}",
        )
    if isinstance(exc, psycopg.OperationalError) or (state or "")[:2] in _RETRY_CLASSES:
        return EX_TEMPFAIL, f"database unavailable, retry later: {first}"
    if state in _SCHEMA_STATES:
        return EX_USAGE, (
            f"the database in WFCLOCK_DATABASE_URL has no wfclock tables, or an older schema "
            f"({first}); run `wfclock db upgrade` against it"
        )
    if state == _PERMISSION_DENIED:
        role = psycopg.conninfo.conninfo_to_dict(url).get("user") or "(default)"
        return EX_USAGE, (
            f"permission denied for database role {role!r} ({first}); give the launcher a role "
            "that may fire schedules"
        )
    if state == _PRUNED:
        return EX_USAGE, first
    return EX_SOFTWARE, f"unexpected error {type(exc).__name__}: {first}"


def jitter_seconds(env: dict[str, str]) -> int:
    raw = env.get("WFCLOCK_JITTER_SECONDS") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise InputError(f"WFCLOCK_JITTER_SECONDS={raw!r} is not a whole number") from None


def jitter_wait(fire: ClockFire, jitter: int, now: datetime) -> float:
    """Seconds to wait before claiming: until the fire's nominal instant plus its offset (a
    retried pod waits only what is left; a late one not at all)."""
    start = fire.scheduled_for + jitter_offset(
        fire_key_for(fire.schedule_id, fire.scheduled_for), jitter
    )
    return max(0.0, (start - now).total_seconds())


def main(env: dict[str, str] | None = None, *, sleep=time.sleep) -> int:
    env = dict(os.environ) if env is None else env
    try:
        fire = fire_from_env(env)
        url = conninfo(env.get("WFCLOCK_DATABASE_URL", ""))
        jitter = jitter_seconds(env)
    except InputError as exc:
        return _fail(EX_USAGE, str(exc))
    _trace(env)
    try:
        if jitter:
            # Spread before touching the database: that is what the jitter is for.
            sleep(jitter_wait(fire, jitter, datetime.now(UTC)))
        with connect(url, _budget(env)) as conn:
            result = launch(conn, fire, now=database_now(conn))
    except (UnknownSchedule, FireNotDue, NotAFire) as exc:
        return _fail(EX_USAGE, str(exc))
    except psycopg.Error as exc:
        code, reason = database_failure(exc, url)
        if code == EX_SOFTWARE:
            traceback.print_exc()
        return _fail(code, reason)
    except Terminated:
        return _fail(
            EX_TEMPFAIL, "terminated (SIGTERM) during the fire; a retry reports whether it launched"
        )
    except Exception as exc:  # noqa: BLE001 - every exit prints its JSON line
        traceback.print_exc()
        return _fail(EX_SOFTWARE, f"unexpected error {type(exc).__name__}: {_first_line(exc)}")
    finally:
        tracing.shutdown()
    print(result.as_json())
    return EX_OK


def _trace(env: dict[str, str]) -> None:
    """Tracing on when the OTEL_* variables ask for it (`wfclock.tracing`): the fire's span is
    exported as it ends. A tracing set-up that fails costs the fire nothing but its span."""
    if not tracing.wanted(env):
        return
    try:
        tracing.setup("wfclock-launcher", env, batch=False)
    except Exception as exc:  # noqa: BLE001 - traces never stop a fire
        print(f"launcher: tracing off, its set-up failed: {_first_line(exc)}", file=sys.stderr)
