"""Schedule state and run queries with SQLAlchemy Core, for the operator and the CLI."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Engine, case, create_engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from wfclock.db.migrate import sqlalchemy_url
from wfclock.db.tables import workflow_runs, workflow_schedule_fires, workflow_schedules


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=10, max_overflow=30)


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


def upsert_schedule(engine: Engine, state: ScheduleState, *, now: datetime) -> dict:
    """Inserts or updates the state row and returns it.

    A changed trigger moves `trigger_effective_from` to `now`, so the launcher refuses fires
    planned under the old configuration. A one-time schedule that completed (or failed) stays so
    unless its trigger changes; a deleted row is never revived.
    """
    table = workflow_schedules
    values = asdict(state)
    stmt = insert(table).values(**values, enabled=True, trigger_effective_from=now)
    new = stmt.excluded
    trigger_changed = (
        table.c.trigger_type.is_distinct_from(new.trigger_type)
        | table.c.run_at.is_distinct_from(new.run_at)
        | table.c.cron.is_distinct_from(new.cron)
        | table.c.timezone.is_distinct_from(new.timezone)
    )
    final = table.c.status.in_(("completed", "failed")) & ~trigger_changed
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.schedule_id],
        set_={
            **{c: new[c] for c in values if c not in ("schedule_id", "status", "next_fire_at")},
            "status": case((final, table.c.status), else_=new.status),
            "next_fire_at": case((final, table.c.next_fire_at), else_=new.next_fire_at),
            "trigger_effective_from": case(
                (trigger_changed, now), else_=table.c.trigger_effective_from
            ),
            "updated_at": func.now(),
        },
        where=table.c.deleted_at.is_(None),
    ).returning(*table.c)
    with engine.begin() as conn:
        row = conn.execute(stmt).mappings().first()
        if row is None:
            query = select(table).where(table.c.schedule_id == state.schedule_id)
            row = conn.execute(query).mappings().first()
    return dict(row)


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
        engine, schedule_id, deleted_at=func.now(), enabled=False, status="disabled",
        next_fire_at=None,
    )  # fmt: skip


def get_schedule(engine: Engine, schedule_id: uuid.UUID) -> dict | None:
    table = workflow_schedules
    with engine.connect() as conn:
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
    """Fires by (outcome, trigger type) as the ledger records them, for the metrics."""
    fires, schedules = workflow_schedule_fires, workflow_schedules
    query = (
        select(fires.c.outcome, schedules.c.trigger_type, func.count())
        .select_from(fires.join(schedules, fires.c.schedule_id == schedules.c.schedule_id))
        .group_by(fires.c.outcome, schedules.c.trigger_type)
    )
    with engine.connect() as conn:
        return {(o, t): n for o, t, n in conn.execute(query)}
