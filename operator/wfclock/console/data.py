"""What the console reads from Postgres, with its read-only login, and the SQL that makes that
login (`wfclock db console-role`): SELECT on the columns the console shows, nothing else."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine, and_, or_, select, text

from wfclock.core.status import FirePolicy
from wfclock.db import store
from wfclock.db.tables import workflow_runs, workflow_schedule_fires, workflow_schedules

# Exactly the columns the console reads; the role gets SELECT on these and on nothing else.
SCHEDULE_COLUMNS = (
    "schedule_id", "tenant", "namespace", "name", "trigger_type", "cron", "timezone", "run_at",
    "status", "last_fire_at", "next_fire_at", "last_run_id", "last_run_status", "last_error",
    "fire_problem", "deleted_at",
)  # fmt: skip
RUN_COLUMNS = (
    "run_id", "tenant", "workflow_id", "workflow_version", "status", "payload",
    "payload_schema_ref", "trigger_type", "trigger_metadata", "trigger_fire_key", "schedule_id",
    "created_at",
)  # fmt: skip
FIRE_COLUMNS = (
    "fire_key", "schedule_id", "scheduled_for", "outcome", "reason", "run_id", "attempts",
    "first_delivered_at", "last_delivered_at",
)  # fmt: skip
# What `store.calendars_of` and `store.clock_launches` read: a schedule's calendars as the
# launcher decides from them, and the fires maxFires counts.
CALENDAR_COLUMNS = (
    "namespace", "name", "business_days_only", "horizon_start", "horizon_end", "holidays_version",
)  # fmt: skip
CALENDAR_DATE_COLUMNS = ("namespace", "calendar", "day", "reason")
CLOCK_LAUNCH_COLUMNS = ("schedule_id", "fires")
READABLE = {
    "workflow_schedules": SCHEDULE_COLUMNS,
    "workflow_runs": RUN_COLUMNS,
    "workflow_schedule_fires": FIRE_COLUMNS,
    "workflow_calendars": CALENDAR_COLUMNS,
    "workflow_calendar_dates": CALENDAR_DATE_COLUMNS,
    "workflow_schedule_clock_launches": CLOCK_LAUNCH_COLUMNS,
}


def ensure_console_role(admin: Engine, login: str, password: str) -> None:
    """Creates (or updates) the console's login: read-only, limited to READABLE. Idempotent;
    run with a login that has CREATEROLE (the migrate step's or an administrator's)."""
    from psycopg import sql

    with admin.begin() as conn:
        raw = conn.connection.driver_connection
        role = sql.Identifier(login)
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": login})
        verb = "CREATE ROLE" if exists.first() is None else "ALTER ROLE"
        raw.execute(
            sql.SQL(verb + " {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                role, sql.Literal(password)
            )
        )
        raw.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        raw.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
        )
        raw.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
        for table, columns in READABLE.items():
            raw.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(table), role))
            raw.execute(
                sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), role
                )
            )


def _trigger(obj: dict) -> dict:
    return (obj.get("spec") or {}).get("trigger") or {}


def _columns(table, names):
    return [table.c[n] for n in names]


class ConsoleData:
    def __init__(self, engine: Engine):
        self.engine = engine

    def known_namespaces(self) -> dict[str, str]:
        """Namespace -> tenant of every schedule the ledger knows (not deleted)."""
        s = workflow_schedules
        query = select(s.c.namespace, s.c.tenant).where(s.c.deleted_at.is_(None)).distinct()
        with self.engine.connect() as conn:
            return {ns: tenant for ns, tenant in conn.execute(query)}

    def schedules(self, uids: list[str]) -> dict[str, dict]:
        s = workflow_schedules
        ids = [uuid.UUID(u) for u in uids if u]
        if not ids:
            return {}
        query = select(*_columns(s, SCHEDULE_COLUMNS)).where(s.c.schedule_id.in_(ids))
        with self.engine.connect() as conn:
            return {str(r["schedule_id"]): dict(r) for r in conn.execute(query).mappings()}

    def fire_policies(self, objs: list[dict]) -> dict[str, FirePolicy]:
        """uid -> the calendars each recurring schedule references and its launched fires, read
        as the operator reads them for `status.nextFires` (`store.calendars_of`,
        `store.clock_launches`): one read of calendars per namespace."""
        recurring = [o for o in objs if _trigger(o).get("type") == "recurring"]
        wanted: dict[str, set[str]] = {}
        for obj in recurring:
            names = _trigger(obj).get("calendars") or []
            wanted.setdefault(obj["metadata"]["namespace"], set()).update(names)
        calendars = {
            ns: store.calendars_of(self.engine, ns, sorted(names))
            for ns, names in wanted.items()
            if names
        }
        policies = {}
        for obj in recurring:
            meta, trigger = obj["metadata"], _trigger(obj)
            found = calendars.get(meta["namespace"], {})
            launched = 0
            if trigger.get("maxFires") is not None and meta.get("uid"):
                launched = store.clock_launches(self.engine, uuid.UUID(meta["uid"]))
            policies[meta.get("uid", "")] = FirePolicy(
                {n: found[n] for n in trigger.get("calendars") or [] if n in found}, launched
            )
        return policies

    def fires(self, uid: str, limit: int = 20) -> list[dict]:
        f = workflow_schedule_fires
        query = (
            select(*_columns(f, FIRE_COLUMNS))
            .where(f.c.schedule_id == uuid.UUID(uid))
            .order_by(f.c.scheduled_for.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def runs(
        self,
        namespaces: list[str],
        tenants: list[str],
        *,
        trigger_type: str = "",
        workflow_id: str = "",
        tenant: str = "",
        since: datetime | None = None,
        schedule_uid: str = "",
        limit: int = 100,
    ) -> list[dict]:
        """Runs the user may see: those of schedules in `namespaces`, and the runs without a
        schedule (event, manual) of `tenants` (the tenants of those namespaces)."""
        r, s = workflow_runs, workflow_schedules
        visible = or_(
            r.c.schedule_id.in_(
                select(s.c.schedule_id).where(s.c.namespace.in_(namespaces or [""]))
            ),
            and_(r.c.schedule_id.is_(None), r.c.tenant.in_(tenants or [""])),
        )
        query = (
            select(
                *_columns(r, RUN_COLUMNS),
                s.c.name.label("schedule_name"),
                s.c.namespace.label("schedule_namespace"),
            )
            .select_from(r.outerjoin(s, s.c.schedule_id == r.c.schedule_id))
            .where(visible)
            .order_by(r.c.created_at.desc(), r.c.run_id)
            .limit(limit)
        )
        if trigger_type:
            query = query.where(r.c.trigger_type == trigger_type)
        if workflow_id:
            query = query.where(r.c.workflow_id == uuid.UUID(workflow_id))
        if tenant:
            query = query.where(r.c.tenant == tenant)
        if since is not None:
            query = query.where(r.c.created_at >= since)
        if schedule_uid:
            query = query.where(r.c.schedule_id == uuid.UUID(schedule_uid))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
