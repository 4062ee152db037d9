"""Schedule state and run queries with SQLAlchemy Core, for the operator and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, func, select, text, update

from wfclock.core.calendars import DerivedCalendar
from wfclock.core.runcontrol import FAILED_RUN_STATUSES
from wfclock.core.status import FAILING_STREAK, FireHistory
from wfclock.db.tables import (
    workflow_runs,
    workflow_schedule_fire_counts,
    workflow_schedule_fires,
    workflow_schedule_fires_horizon,
    workflow_schedule_skip_counts,
    workflow_schedules,
)
from wfclock.db.urls import sqlalchemy_url


@lru_cache(maxsize=8)
def engine_for(url: str, threads: int = 5) -> Engine:
    """An engine whose pool keeps a connection for each of `threads` threads: a busier pool would
    open and close a connection per use beyond it."""
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=threads, max_overflow=5)


@dataclass(frozen=True)
class ScheduleState:
    """What the operator writes for one WorkflowSchedule on every change."""

    schedule_id: uuid.UUID
    tenant: str
    namespace: str
    name: str
    workflow_id: uuid.UUID
    workflow_version: int
    trigger_type: str
    run_at: datetime | None
    cron: str | None
    timezone: str
    status: str
    missed_fires: str
    catch_up_window_seconds: int
    generation: int
    registered_kind: str | None
    registered_name: str | None
    next_fire_at: datetime | None
    last_error: str | None = None
    starting_deadline_seconds: int = 300
    pause_reason: str | None = None
    overlap_policy: str = "Allow"
    calendars: list[str] = field(default_factory=list)
    active_from: datetime | None = None
    active_until: datetime | None = None
    max_fires: int | None = None
    jitter_seconds: int = 0
    # Why a recurring schedule ended (its status is then `completed`); None while it runs.
    end_reason: str | None = None
    dst_policy: str | None = None


# What the upsert keeps, and why (plain SQL: compiled once, run often):
# - A changed trigger (for a one-time schedule: its instant or its type; its time zone only
#   labels the instant) moves trigger_effective_from to the publish time: the launcher refuses
#   fires planned before it, so an old trigger's Jobs never run.
# - A pause opens a quiet window at its publish time and a resume closes it at the end of its
#   publish second (every
#   window is kept, a multirange): the launcher refuses fires scheduled inside any of them, so
#   a paused window never fires, under any policy, while owed fires from before it stay valid.
# - A one-time schedule whose instant already fired (the ledger has its launched key) is
#   completed whatever the edit; one that completed or failed stays so unless its instant changes,
#   with the reason it failed (`last_error`).
# - An older generation never overwrites a newer one; a deleted row is never revived.
_TRIGGER_CHANGED = """(s.trigger_type IS DISTINCT FROM excluded.trigger_type
    OR s.run_at IS DISTINCT FROM excluded.run_at
    OR (excluded.trigger_type = 'recurring'
        AND (s.cron IS DISTINCT FROM excluded.cron OR s.timezone IS DISTINCT FROM excluded.timezone)))"""
_RESUMED = "(s.status IN ('paused', 'disabled') AND excluded.status = 'scheduled')"
_PAUSED = "(s.status IN ('scheduled', 'completed', 'failed') AND excluded.status = 'paused')"
# A recurring schedule's `completed` is its end (activeUntil passed, maxFires reached), decided
# by the operator on every reconcile: a bound raised by an edit makes it run again, owing no
# fire of the time it was ended (its CronJob was gone).
_UNENDED = (
    "(s.trigger_type = 'recurring' AND s.status = 'completed' AND excluded.status <> 'completed')"
)
_FIRED = """(excluded.trigger_type = 'schedule' AND EXISTS (
    SELECT 1 FROM workflow_schedule_fires f
    WHERE f.schedule_id = excluded.schedule_id AND f.scheduled_for = excluded.run_at
      AND f.outcome = 'launched'))"""
_UPSERT = text(
    """
INSERT INTO workflow_schedules AS s
    (schedule_id, tenant, namespace, name, workflow_id, workflow_version, trigger_type, run_at,
     cron, timezone, status, missed_fires, catch_up_window_seconds, generation, registered_kind,
     registered_name, next_fire_at, last_error, enabled, trigger_effective_from, accounted_until,
     starting_deadline_seconds, quiet, pause_reason, overlap_policy, calendars, active_from,
     active_until, max_fires, jitter_seconds, end_reason, dst_policy)
VALUES
    (:schedule_id, :tenant, :namespace, :name, :workflow_id, :workflow_version, :trigger_type,
     :run_at, :cron, :timezone, :status, :missed_fires, :catch_up_window_seconds, :generation,
     :registered_kind, :registered_name, :next_fire_at, :last_error, true, :published_at,
     :published_at, :starting_deadline_seconds,
     CASE WHEN :status = 'paused'
          THEN tstzmultirange(tstzrange(CAST(:published_at AS timestamptz), NULL))
          ELSE '{{}}'::tstzmultirange END,
     :pause_reason, :overlap_policy, :calendars, :active_from, :active_until, :max_fires,
     :jitter_seconds, :end_reason, :dst_policy)
ON CONFLICT (schedule_id) DO UPDATE SET
    tenant = excluded.tenant, namespace = excluded.namespace, name = excluded.name,
    workflow_id = excluded.workflow_id, workflow_version = excluded.workflow_version,
    trigger_type = excluded.trigger_type, run_at = excluded.run_at, cron = excluded.cron,
    timezone = excluded.timezone, missed_fires = excluded.missed_fires,
    catch_up_window_seconds = excluded.catch_up_window_seconds,
    starting_deadline_seconds = excluded.starting_deadline_seconds,
    generation = excluded.generation, registered_kind = excluded.registered_kind,
    registered_name = excluded.registered_name,
    pause_reason = excluded.pause_reason, overlap_policy = excluded.overlap_policy,
    calendars = excluded.calendars, active_from = excluded.active_from,
    active_until = excluded.active_until, max_fires = excluded.max_fires,
    jitter_seconds = excluded.jitter_seconds, end_reason = excluded.end_reason,
    dst_policy = excluded.dst_policy,
    enabled = true,
    status = CASE WHEN {fired} THEN 'completed' WHEN {final} THEN s.status
                  ELSE excluded.status END,
    next_fire_at = CASE WHEN {fired} THEN NULL WHEN {final} THEN s.next_fire_at
                        ELSE excluded.next_fire_at END,
    -- A kept outcome keeps its reason (a miss recorded after the reconcile read the row).
    last_error = CASE WHEN {fired} THEN excluded.last_error WHEN {final} THEN s.last_error
                      ELSE excluded.last_error END,
    trigger_effective_from = CASE WHEN {changed} THEN excluded.trigger_effective_from
                                  ELSE s.trigger_effective_from END,
    -- The new trigger's fires are owed from its publish time, even where the sweep already
    -- went past it under the old trigger (an edit reconciled late).
    accounted_until = CASE WHEN {changed} THEN excluded.trigger_effective_from
                           WHEN {unended}
                           THEN greatest(s.accounted_until, excluded.trigger_effective_from)
                           ELSE s.accounted_until END,
    -- A pause opens a window at its publish time (an open range), a resume closes every open
    -- one at the end of the second it was published in: the API server records the time to
    -- the second, so a fire in that second may have been due before the resume (the resume
    -- race), and a fire due while paused never runs. Windows of earlier pauses stay.
    quiet = CASE WHEN {paused}
                 THEN s.quiet + tstzmultirange(tstzrange(excluded.trigger_effective_from, NULL))
                 WHEN {resumed}
                 THEN s.quiet - tstzmultirange(tstzrange(
                     date_trunc('second', excluded.trigger_effective_from) + interval '1 second',
                     NULL))
                 ELSE s.quiet END,
    updated_at = now()
WHERE s.deleted_at IS NULL AND s.generation <= excluded.generation
RETURNING s.*
""".format(
        changed=_TRIGGER_CHANGED,
        resumed=_RESUMED,
        paused=_PAUSED,
        fired=_FIRED,
        final=f"s.trigger_type = 'schedule' AND s.status IN ('completed', 'failed') "
        f"AND NOT {_TRIGGER_CHANGED}",
        unended=_UNENDED,
    )
)


def upsert_schedule(
    engine: Engine,
    state: ScheduleState,
    *,
    published_at: datetime,
    then: Callable[[object, dict], None] | None = None,
) -> dict:
    """Inserts or updates the state row and returns it (see `_UPSERT` for what is kept);
    `published_at` is when the spec it registers was published. `then(conn, row)`, when given,
    runs in the same transaction, holding the row (`conn`: the psycopg connection): what it
    writes commits with the row or not at all. Without it, no transaction is opened: the upsert
    is one statement, atomic on its own (and a second reads the row when it wrote nothing)."""
    with engine.begin() if then is not None else autocommit(engine) as conn:
        row = conn.execute(_UPSERT, {**asdict(state), "published_at": published_at})
        row = row.mappings().first()
        if row is None:  # deleted, or a newer generation is registered: left as it is
            table = workflow_schedules
            query = select(table).where(table.c.schedule_id == state.schedule_id)
            row = conn.execute(query).mappings().first()
        row = dict(row)
        if then is not None:
            then(conn.connection.driver_connection, row)
    return row


def disable_schedule(
    engine: Engine,
    schedule_id: uuid.UUID,
    error: str,
    *,
    published_at: datetime,
    generation: int | None = None,
) -> None:
    """An invalid spec, published at `published_at`: the launcher refuses fires from then on
    (a quiet window opens). A one-time schedule that already completed or missed keeps that
    outcome (the spec error shows in the resource's status). `generation`, the invalid spec's,
    is recorded as registered (never lowering it): its reconcile is over, so the drift checks
    treat a child changed from here on as drift, not as a registration in flight."""
    table = workflow_schedules
    # An open range from the publish time (absorbed by a window that is already open).
    opened = func.tstzmultirange(func.tstzrange(published_at, None))
    registered = {}
    if generation is not None:
        registered["generation"] = func.greatest(table.c.generation, generation)
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(
                table.c.schedule_id == schedule_id,
                table.c.deleted_at.is_(None),
                table.c.status.not_in(["completed", "failed"]),
            )
            .values(
                status="disabled",
                next_fire_at=None,
                last_error=error,
                quiet=table.c.quiet.op("+")(opened),
                updated_at=func.now(),
                **registered,
            )
        )


def update_schedule(engine: Engine, schedule_id: uuid.UUID, **values) -> None:
    table = workflow_schedules
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.schedule_id == schedule_id)
            .values(**values, updated_at=func.now())
        )


def mark_deleted(engine: Engine, schedule_id: uuid.UUID) -> None:
    """First step of a delete: from now on the launcher refuses every fire of this schedule."""
    update_schedule(
        engine,
        schedule_id,
        deleted_at=func.now(),
        enabled=False,
        status="disabled",
        next_fire_at=None,
    )


def get_schedule(engine: Engine, schedule_id: uuid.UUID) -> dict | None:
    table = workflow_schedules
    with autocommit(engine) as conn:
        row = conn.execute(select(table).where(table.c.schedule_id == schedule_id))
        found = row.mappings().first()
    return dict(found) if found else None


def list_schedules(engine: Engine, *, tenant: str | None = None) -> list[dict]:
    table = workflow_schedules
    query = select(table).order_by(table.c.namespace, table.c.name)
    if tenant:
        query = query.where(table.c.tenant == tenant)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def list_runs(
    engine: Engine,
    *,
    tenant: str | None = None,
    workflow_id: uuid.UUID | None = None,
    trigger_type: str | None = None,
    schedule_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[dict]:
    table = workflow_runs
    query = select(table).order_by(table.c.created_at.desc(), table.c.run_id).limit(limit)
    for column, value in (
        (table.c.tenant, tenant),
        (table.c.workflow_id, workflow_id),
        (table.c.trigger_type, trigger_type),
        (table.c.schedule_id, schedule_id),
    ):
        if value is not None:
            query = query.where(column == value)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def list_fires(engine: Engine, schedule_id: uuid.UUID | None = None) -> list[dict]:
    table = workflow_schedule_fires
    query = select(table).order_by(table.c.scheduled_for)
    if schedule_id is not None:
        query = query.where(table.c.schedule_id == schedule_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def fire_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Fires recorded by (outcome, trigger type), for the metrics: read from the counts a trigger
    keeps as fires are recorded (one row per schedule and outcome), never from the ledger."""
    counts, schedules = workflow_schedule_fire_counts, workflow_schedules
    total = func.sum(counts.c.fires)
    query = (
        select(counts.c.outcome, schedules.c.trigger_type, total)
        .select_from(counts.join(schedules, counts.c.schedule_id == schedules.c.schedule_id))
        .group_by(counts.c.outcome, schedules.c.trigger_type)
        .having(total > 0)
    )
    with engine.connect() as conn:
        return {(o, t): int(n) for o, t, n in conn.execute(query)}


# One statement (one round trip): the latest fires with their runs, the latest clock fire whose
# run did not fail, and the latest clock fire that started no run, each row tagged with its part.
_FIRE_HISTORY = text(
    """
(SELECT 'recent' AS part, f.scheduled_for, f.first_delivered_at, f.outcome, f.reason, f.run_id,
        f.kind, r.status AS run_status, r.created_at AS run_created_at
 FROM workflow_schedule_fires f LEFT JOIN workflow_runs r ON r.run_id = f.run_id
 WHERE f.schedule_id = :schedule_id
 ORDER BY f.scheduled_for DESC LIMIT :limit)
UNION ALL
(SELECT 'success', f.scheduled_for, NULL, NULL, NULL, NULL, NULL, NULL, NULL
 FROM workflow_schedule_fires f JOIN workflow_runs r ON r.run_id = f.run_id
 WHERE f.schedule_id = :schedule_id AND f.kind = 'clock' AND f.outcome = 'launched'
   AND lower(r.status) <> ALL(:failed)
 ORDER BY f.scheduled_for DESC LIMIT 1)
UNION ALL
(SELECT 'skipped', f.scheduled_for, NULL, f.outcome, f.reason, NULL, NULL, NULL, NULL
 FROM workflow_schedule_fires f
 WHERE f.schedule_id = :schedule_id AND f.kind = 'clock' AND f.outcome = 'skipped'
 ORDER BY f.scheduled_for DESC LIMIT 1)
"""
)
_RECENT_COLUMNS = (
    "scheduled_for",
    "first_delivered_at",
    "outcome",
    "reason",
    "run_id",
    "kind",
    "run_status",
    "run_created_at",
)


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection for work of one statement, or reads that need no common snapshot: each
    statement commits on its own, so no BEGIN and no COMMIT or ROLLBACK travel to the server
    around it (two round trips fewer)."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def fire_history(engine: Engine, schedule_id: uuid.UUID, limit: int) -> FireHistory:
    """The schedule's latest `limit` fires (at least the failing streak's length) with their
    runs, its latest successful and latest skipped clock fire, for the status."""
    params = {
        "schedule_id": schedule_id,
        "limit": max(limit, FAILING_STREAK),
        "failed": sorted(FAILED_RUN_STATUSES),
    }
    with autocommit(engine) as conn:
        rows = conn.execute(_FIRE_HISTORY, params).mappings().all()
    parts: dict[str, list] = {"recent": [], "success": [], "skipped": []}
    for row in rows:
        parts[row["part"]].append(row)
    recent = sorted(
        ({column: row[column] for column in _RECENT_COLUMNS} for row in parts["recent"]),
        key=lambda fire: fire["scheduled_for"],
        reverse=True,
    )
    success = parts["success"][0]["scheduled_for"] if parts["success"] else None
    skipped = parts["skipped"][0] if parts["skipped"] else None
    last_skipped = (
        {key: skipped[key] for key in ("scheduled_for", "outcome", "reason")} if skipped else None
    )
    return FireHistory(recent, success, last_skipped)


def release_buffered_fires(
    engine: Engine, on_error: Callable[[uuid.UUID, Exception], None] | None = None
) -> int:
    """Launches (or skips, saying why) each buffered fire whose schedule has no unfinished run
    left; the trigger on workflow_runs does this as runs finish, this is the sweep's backstop
    (a schedule whose overlap policy changed meanwhile, a run finished by a replica restore, a
    release the trigger gave up on). Returns how many runs it started.

    Each schedule in a transaction of its own: the release holds the schedule's row, and a
    worker whose transaction finishes runs of several schedules takes their rows (through the
    trigger) in its own order, so a sweep holding several rows at once deadlocked with it.
    A schedule whose release fails is passed to `on_error` and the others are still released
    (without `on_error`, the error is raised)."""
    with engine.connect() as conn:
        schedules = conn.execute(
            text(
                "SELECT DISTINCT schedule_id FROM workflow_schedule_fires "
                "WHERE outcome = 'buffered' ORDER BY schedule_id"
            )
        ).scalars()
        schedules = list(schedules)
    started = 0
    for schedule_id in schedules:
        try:
            with engine.begin() as conn:
                run = conn.execute(
                    text("SELECT wfclock_release_buffered(:schedule_id)"),
                    {"schedule_id": schedule_id},
                ).scalar_one()
        except sqlalchemy.exc.DBAPIError as error:
            if on_error is None:
                raise
            on_error(schedule_id, error)
            continue
        started += run is not None
    return started


def buffered_fires(conn, schedule_id: uuid.UUID) -> list[tuple[str, datetime]]:
    """The schedule's buffered fires (key, instant), read on the psycopg connection `conn`, in
    a transaction that holds the schedule's row (`upsert_schedule`'s `then`)."""
    return conn.execute(
        "SELECT fire_key, scheduled_for FROM workflow_schedule_fires "
        "WHERE schedule_id = %s AND outcome = 'buffered' ORDER BY scheduled_for",
        (schedule_id,),
    ).fetchall()


def skip_buffered_fire(conn, key: str, reason: str) -> None:
    """Records the buffered fire `key` as skipped with `reason` (it never runs), on the
    psycopg connection `conn` that holds the schedule's row."""
    conn.execute(
        "UPDATE workflow_schedule_fires SET outcome = 'skipped', reason = %s "
        "WHERE fire_key = %s AND outcome = 'buffered'",
        (reason, key),
    )


def skip_counts(engine: Engine) -> dict[str, int]:
    """Skipped clock fires by reason (overlap, paused, missed, ...), for the metrics: read from
    the counts a trigger keeps (migration 0005), never from the ledger."""
    counts = workflow_schedule_skip_counts
    query = select(counts.c.reason, func.sum(counts.c.fires)).group_by(counts.c.reason)
    with engine.connect() as conn:
        return {reason: int(n) for reason, n in conn.execute(query)}


def schedule_fire_ages(engine: Engine, now: datetime) -> list[tuple[str, str, float | None, float]]:
    """Per live scheduled schedule: (namespace, name, seconds since its last launched fire or
    None, seconds its next fire is overdue, 0 when not due yet)."""
    table = workflow_schedules
    query = select(
        table.c.namespace, table.c.name, table.c.last_fire_at, table.c.next_fire_at
    ).where(table.c.deleted_at.is_(None), table.c.status == "scheduled")
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        (
            namespace,
            name,
            (now - last).total_seconds() if last else None,
            max(0.0, (now - upcoming).total_seconds()) if upcoming else 0.0,
        )
        for namespace, name, last, upcoming in rows
    ]


def latest_fire_for_job(engine: Engine, job_name: str) -> dict | None:
    """The ledger's latest record of a fire delivered by the Job `job_name`."""
    fires = workflow_schedule_fires
    query = (
        select(fires.c.outcome, fires.c.reason, fires.c.run_id)
        .where(fires.c.source == job_name)
        .order_by(fires.c.last_delivered_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(query).mappings().first()
    return dict(found) if found else None


def live_schedules(engine: Engine, namespaces: list[str] | None = None) -> list[dict]:
    """Schedules that are registered and not deleted (scheduled, paused, or disabled by an
    invalid edit: the fires owed from before it must still be accounted)."""
    table = workflow_schedules
    query = select(table).where(
        table.c.deleted_at.is_(None), table.c.status.in_(["scheduled", "paused", "disabled"])
    )
    if namespaces:
        query = query.where(table.c.namespace.in_(namespaces))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def recorded_keys(engine: Engine, keys: list[str]) -> set[str]:
    """Which of `keys` the ledger holds."""
    if not keys:
        return set()
    fires = workflow_schedule_fires
    with engine.connect() as conn:
        found = conn.execute(select(fires.c.fire_key).where(fires.c.fire_key.in_(keys)))
        return {key for (key,) in found}


# The key is claimed as skipped (so no late delivery can launch it) and the state row says so,
# in one statement that locks the schedule row first, as the launcher does; only while the row
# is still the one the decision was made from (same trigger, not deleted).
_RECORD_MISSED = text(
    """
WITH schedule AS (
    SELECT schedule_id, trigger_type FROM workflow_schedules
    WHERE schedule_id = :schedule_id AND deleted_at IS NULL AND status = 'scheduled'
      AND trigger_effective_from = :effective_from
    FOR UPDATE
), claim AS (
    INSERT INTO workflow_schedule_fires
        (fire_key, schedule_id, scheduled_for, outcome, reason, source)
    SELECT :key, schedule_id, :scheduled_for, 'skipped', :reason, 'operator' FROM schedule
    ON CONFLICT (fire_key) DO NOTHING
    RETURNING fire_key
)
UPDATE workflow_schedules s SET
    status = CASE WHEN s.trigger_type = 'schedule' THEN 'failed' ELSE s.status END,
    next_fire_at = CASE WHEN s.trigger_type = 'schedule' THEN NULL ELSE s.next_fire_at END,
    last_run_status = 'missed', last_error = :reason, updated_at = now()
FROM claim WHERE s.schedule_id = :schedule_id
RETURNING 1
"""
)


def record_missed(
    engine: Engine, row: dict, scheduled_for: datetime, key: str, reason: str
) -> bool:
    """Records a fire as missed (see `_RECORD_MISSED`); False when the decision no longer
    holds (the fire was recorded meanwhile, or the schedule changed)."""
    values = {
        "schedule_id": row["schedule_id"],
        "effective_from": row["trigger_effective_from"],
        "key": key,
        "scheduled_for": scheduled_for,
        "reason": reason,
    }
    with engine.begin() as conn:
        return conn.execute(_RECORD_MISSED, values).first() is not None


def advance_accounting(engine: Engine, row: dict, until: datetime) -> None:
    """Every fire up to `until` is accounted, unless the trigger changed meanwhile."""
    table = workflow_schedules
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(
                table.c.schedule_id == row["schedule_id"],
                table.c.trigger_effective_from == row["trigger_effective_from"],
                table.c.accounted_until < until,
            )
            .values(accounted_until=until)
        )


def fire_recorded(engine: Engine, key: str) -> bool:
    return bool(recorded_keys(engine, [key]))


def registered_schedules(engine: Engine, namespaces: list[str] | None = None) -> list[dict]:
    """Schedules whose children should exist: not deleted, not finished."""
    table = workflow_schedules
    query = select(table).where(
        table.c.deleted_at.is_(None), table.c.status.in_(["scheduled", "paused", "disabled"])
    )
    if namespaces:
        query = query.where(table.c.namespace.in_(namespaces))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def set_fire_problem(engine: Engine, schedule_id: uuid.UUID, problem: str) -> bool:
    """Records a problem with a fire's Job; False when it was already the recorded one."""
    table = workflow_schedules
    with engine.begin() as conn:
        done = conn.execute(
            update(table)
            .where(
                table.c.schedule_id == schedule_id,
                table.c.fire_problem.is_distinct_from(problem),
            )
            .values(fire_problem=problem, updated_at=func.now())
        )
        return done.rowcount > 0


def ensure_tenant_login(
    engine: Engine, login: str, tenant: str, password: str, credential: str
) -> bool:
    """Creates the tenant's launcher login, or sets its password when the recorded fingerprint
    differs; True when anything was written. Needs CREATEROLE (or a superuser)."""
    import psycopg

    try:
        return _ensure_tenant_login(engine, login, tenant, password, credential)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
        # Another replica created the login at the same moment: set its password instead.
        return _ensure_tenant_login(engine, login, tenant, password, credential)
    except sqlalchemy.exc.IntegrityError:
        return _ensure_tenant_login(engine, login, tenant, password, credential)


# The class (first key) of the two-key advisory lock that serializes writes of one login.
LOGIN_LOCK_CLASS = 0x77666C67  # "wflg"


def _ensure_tenant_login(
    engine: Engine, login: str, tenant: str, password: str, credential: str
) -> bool:
    from psycopg import sql

    with engine.begin() as conn:
        # One writer of a login at a time (replicas, threads): two concurrent ALTER ROLEs or
        # GRANTs of one role fail with "tuple concurrently updated"; the second waits here,
        # then finds the login recorded by the first. Two keys (a class of its own and the
        # login's hash): never the one-key space of the sweep's session lock, which a login's
        # hash alone could equal (the sweep, writing a login, then waited on itself for good).
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, hashtext('wfclock-login:' || :r))"),
            {"c": LOGIN_LOCK_CLASS, "r": login},
        )
        recorded = conn.execute(
            text("SELECT tenant, credential FROM wfclock_tenant_logins WHERE role_name = :r"),
            {"r": login},
        ).first()
        if recorded is not None and tuple(recorded) == (tenant, credential):
            return False
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": login})
        raw = conn.connection.driver_connection
        role, secret = sql.Identifier(login), sql.Literal(password)
        if exists.first() is None:
            statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE wfclock_launcher")
        else:
            statement = sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}")
            raw.execute(sql.SQL("GRANT wfclock_launcher TO {}").format(role))
        raw.execute(statement.format(role, secret))
        conn.execute(
            text(
                """
                INSERT INTO wfclock_tenant_logins (role_name, tenant, credential)
                VALUES (:r, :t, :c)
                ON CONFLICT (role_name) DO UPDATE
                SET tenant = excluded.tenant, credential = excluded.credential, updated_at = now()
                """
            ),
            {"r": login, "t": tenant, "c": credential},
        )
    return True


# --- pruning the ledger -------------------------------------------------------------------------

# Shared by every fire the ledger records (its guard trigger, migration 0002), exclusive here:
# a prune batch waits for fires in flight, and fires wait for it.
PRUNE_LOCK = 7406372002

# Per schedule, through the (schedule_id, scheduled_for) index: fires older than the horizon,
# not delivered since it, and never the schedule's latest fire.
_PRUNABLE = """
SELECT f.fire_key
FROM workflow_schedules s
CROSS JOIN LATERAL (
    SELECT f.fire_key FROM workflow_schedule_fires f
    WHERE f.schedule_id = s.schedule_id
      AND f.scheduled_for < :horizon AND f.last_delivered_at < :horizon
      AND f.outcome <> 'buffered'
      AND f.scheduled_for < (SELECT max(l.scheduled_for) FROM workflow_schedule_fires l
                             WHERE l.schedule_id = s.schedule_id AND l.kind = 'clock')
    LIMIT :batch
) f
"""
_COUNT_PRUNABLE = text(f"SELECT count(*) FROM ({_PRUNABLE.replace('LIMIT :batch', '')}) AS p")
_PRUNE_BATCH = text(
    f"""
WITH doomed AS ({_PRUNABLE} LIMIT :batch),
gone AS (
    DELETE FROM workflow_schedule_fires WHERE fire_key IN (SELECT fire_key FROM doomed)
    RETURNING 1
)
SELECT count(*) FROM gone
"""
)
# The horizon is raised in the batch's transaction, after its rows are gone (fires wait on
# PRUNE_LOCK meanwhile): always when the batch deleted rows, so every pruned fire is below it;
# otherwise only once it lags `older_than` by more than the slack (the operator's pruner:
# HORIZON_SLACK), so a prune that finds nothing to delete (an operator's start, most hours)
# writes nothing, not even a row lock, and the horizon still bounds how far back the
# accounting sweep walks. The first prune of a database creates the row.
HORIZON_SLACK = timedelta(days=1)
_RAISE_HORIZON = text(
    """
UPDATE workflow_schedule_fires_horizon
SET pruned_before = greatest(pruned_before, :horizon),
    pruned_rows = pruned_rows + :rows,
    updated_at = now()
WHERE :rows > 0 OR pruned_before < CAST(:horizon AS timestamptz) - :slack
"""
)
_FIRST_HORIZON = text(
    """
INSERT INTO workflow_schedule_fires_horizon (singleton, pruned_before, pruned_rows)
VALUES (true, :horizon, :rows)
ON CONFLICT (singleton) DO NOTHING
"""
)


@dataclass(frozen=True)
class Pruned:
    horizon: datetime
    rows: int


def prune_fires(
    engine: Engine,
    *,
    older_than: datetime,
    batch: int = 5000,
    dry_run: bool = False,
    slack: timedelta = timedelta(0),
) -> Pruned:
    """Deletes ledger rows of fires scheduled and last delivered before `older_than`, keeping
    each schedule's latest fire, and raises the ledger's horizon to `older_than` with them (see
    `_RAISE_HORIZON`; without rows deleted, only when it lags by more than `slack`): from then
    on a fire before it is never launched unless its row is still there (a duplicate).
    Batches of `batch` rows, each its own transaction holding PRUNE_LOCK."""
    params = {"horizon": older_than, "batch": batch}
    if dry_run:
        with engine.connect() as conn:
            return Pruned(older_than, conn.execute(_COUNT_PRUNABLE, params).scalar_one())
    total = 0
    while True:
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(PRUNE_LOCK)))
            deleted = conn.execute(_PRUNE_BATCH, params).scalar_one()
            raised = {"horizon": older_than, "rows": deleted, "slack": slack}
            if conn.execute(_RAISE_HORIZON, raised).rowcount == 0:
                conn.execute(_FIRST_HORIZON, raised)
        total += deleted
        if deleted < batch:
            return Pruned(older_than, total)


def ledger_horizon(engine: Engine) -> datetime | None:
    """Fires scheduled before this may have been pruned from the ledger (None: never pruned)."""
    horizon = workflow_schedule_fires_horizon
    with engine.connect() as conn:
        return conn.execute(select(horizon.c.pruned_before)).scalar_one_or_none()


# --- calendars (migration 0007) ------------------------------------------------------------------


def write_calendar(engine: Engine, namespace: str, name: str, derived: DerivedCalendar) -> None:
    """Replaces what the launcher reads of one WorkflowCalendar, in one transaction (a fire
    deciding meanwhile sees the old or the new calendar, never half of one)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_calendars AS c (namespace, name, business_days_only, "
                "horizon_start, horizon_end, holidays_version) VALUES (:ns, :name, :business, "
                ":start, :end, :version) ON CONFLICT (namespace, name) DO UPDATE SET "
                "business_days_only = excluded.business_days_only, "
                "horizon_start = excluded.horizon_start, horizon_end = excluded.horizon_end, "
                "holidays_version = excluded.holidays_version, updated_at = now()"
            ),
            {
                "ns": namespace,
                "name": name,
                "business": derived.business_days_only,
                "start": derived.horizon_start,
                "end": derived.horizon_end,
                "version": derived.holidays_version,
            },
        )
        conn.execute(
            text("DELETE FROM workflow_calendar_dates WHERE namespace = :ns AND calendar = :name"),
            {"ns": namespace, "name": name},
        )
        if derived.excluded:
            conn.execute(
                text(
                    "INSERT INTO workflow_calendar_dates (namespace, calendar, day, reason) "
                    "VALUES (:ns, :name, :day, :reason)"
                ),
                [
                    {"ns": namespace, "name": name, "day": day, "reason": reason}
                    for day, reason in sorted(derived.excluded.items())
                ],
            )


def delete_calendar(engine: Engine, namespace: str, name: str) -> None:
    """A deleted WorkflowCalendar: schedules that reference it refuse their fires (fail closed)."""
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM workflow_calendars WHERE namespace = :ns AND name = :name"),
            {"ns": namespace, "name": name},
        )


def calendars_of(engine: Engine, namespace: str, names: list[str]) -> dict[str, DerivedCalendar]:
    """The calendars of `namespace` named in `names` as the launcher reads them (absent: not
    derived, the schedule's fires are refused)."""
    if not names:
        return {}
    found: dict[str, DerivedCalendar] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT name, business_days_only, horizon_start, horizon_end, holidays_version "
                "FROM workflow_calendars WHERE namespace = :ns AND name = ANY(:names)"
            ),
            {"ns": namespace, "names": names},
        ).all()
        dates = conn.execute(
            text(
                "SELECT calendar, day, reason FROM workflow_calendar_dates "
                "WHERE namespace = :ns AND calendar = ANY(:names)"
            ),
            {"ns": namespace, "names": names},
        ).all()
    excluded: dict[str, dict[date, str]] = {}
    for calendar, day, reason in dates:
        excluded.setdefault(calendar, {})[day] = reason
    for name, business, start, end, version in rows:
        found[name] = DerivedCalendar(start, end, excluded.get(name, {}), business, version)
    return found


def schedules_using_calendar(engine: Engine, namespace: str, name: str) -> list[dict]:
    """The live schedules of `namespace` that reference calendar `name`."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT namespace, name FROM workflow_schedules WHERE namespace = :ns "
                "AND :name = ANY(calendars) AND deleted_at IS NULL"
            ),
            {"ns": namespace, "name": name},
        ).mappings()
        return [dict(r) for r in rows]


def clock_launches(engine: Engine, schedule_id: uuid.UUID) -> int:
    """The clock fires the schedule launched or buffered, all time (what maxFires counts)."""
    with engine.connect() as conn:
        fires = conn.execute(
            text("SELECT fires FROM workflow_schedule_clock_launches WHERE schedule_id = :id"),
            {"id": schedule_id},
        ).scalar_one_or_none()
    return int(fires or 0)
