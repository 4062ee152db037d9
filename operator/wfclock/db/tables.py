"""The tables wfclock owns. Names are a contract: operators of the system query them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZMULTIRANGE, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

now = text("now()")

workflow_schedules = Table(
    "workflow_schedules",
    metadata,
    Column("schedule_id", UUID(as_uuid=True), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("workflow_id", UUID(as_uuid=True), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("trigger_type", Text, nullable=False),
    Column("run_at", DateTime(timezone=True)),
    Column("cron", Text),
    Column("timezone", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("status", Text, nullable=False),
    # When the current trigger configuration took effect: fires scheduled before it belong to an
    # older configuration and are refused by the launcher.
    Column("trigger_effective_from", DateTime(timezone=True), nullable=False, server_default=now),
    # Every fire of the current trigger up to this instant is accounted for in the ledger.
    Column("accounted_until", DateTime(timezone=True), nullable=False),
    Column("missed_fires", Text, nullable=False, server_default="latest"),
    Column("catch_up_window_seconds", Integer, nullable=False, server_default="3600"),
    Column("starting_deadline_seconds", Integer, nullable=False, server_default="300"),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("registered_kind", Text),
    Column("registered_name", Text),
    Column("last_fire_at", DateTime(timezone=True)),
    Column("next_fire_at", DateTime(timezone=True)),
    Column("last_fire_key", Text),
    Column("last_run_id", UUID(as_uuid=True)),
    Column("last_run_status", Text),
    Column("last_error", Text),
    # Every paused or invalid window [from, until) of the schedule: their fires never run.
    Column("quiet", TSTZMULTIRANGE, nullable=False, server_default="{}"),
    # The latest problem with a fire's Job (stuck, failed); cleared by a fire its Job delivers.
    Column("fire_problem", Text),
    # Why the schedule is paused, as its spec says (shown in the status and the Events).
    Column("pause_reason", Text),
    # What a fire does while a run of the schedule is unfinished: Allow, Skip or BufferOne.
    Column("overlap_policy", Text, nullable=False, server_default="Allow"),
    # Calendars (names in the schedule's namespace) whose excluded dates refuse its fires, and
    # its bounds (migration 0007): wfclock_policy_refusal reads them under the row lock.
    Column("calendars", ARRAY(Text), nullable=False, server_default="{}"),
    Column("active_from", DateTime(timezone=True)),
    Column("active_until", DateTime(timezone=True)),
    Column("max_fires", Integer),
    Column("jitter_seconds", Integer, nullable=False, server_default="0"),
    # Why an ended recurring schedule (status completed) ended: activeUntil or maxFires.
    Column("end_reason", Text),
    # A recurring schedule's daylight-saving policy (NULL: the CronJob's raw fires; migration 0008).
    Column("dst_policy", Text),
    Column("deleted_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
    CheckConstraint("trigger_type IN ('schedule', 'recurring')", name="trigger_type"),
    CheckConstraint(
        "status IN ('scheduled', 'paused', 'disabled', 'completed', 'failed')", name="status"
    ),
    CheckConstraint(
        "(trigger_type = 'schedule' AND run_at IS NOT NULL AND cron IS NULL) OR "
        "(trigger_type = 'recurring' AND cron IS NOT NULL AND run_at IS NULL)",
        name="trigger_shape",
    ),
    CheckConstraint("overlap_policy IN ('Allow', 'Skip', 'BufferOne')", name="overlap_policy"),
    Index(None, "tenant", "workflow_id"),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("run_id", UUID(as_uuid=True), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("workflow_id", UUID(as_uuid=True), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("payload", JSONB, nullable=False),
    Column("payload_schema_ref", Text),
    Column("trigger_type", Text, nullable=False),
    Column("trigger_metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("trigger_fire_key", Text),
    Column("schedule_id", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=now),
    CheckConstraint(
        "trigger_type IN ('event', 'schedule', 'recurring', 'manual')", name="trigger_type"
    ),
    Index(
        None,
        "trigger_fire_key",
        unique=True,
        postgresql_where=text("trigger_fire_key IS NOT NULL"),
    ),
    Index(None, "tenant", "workflow_id", "created_at"),
    # The runs that hold a schedule's overlap policy (migration 0005).
    Index(
        "ix_workflow_runs_schedule_id_unfinished",
        "schedule_id",
        "created_at",
        postgresql_where=text("schedule_id IS NOT NULL AND NOT wfclock_run_finished(status)"),
    ),
)

workflow_schedule_fires = Table(
    "workflow_schedule_fires",
    metadata,
    Column("fire_key", Text, primary_key=True),
    Column("schedule_id", UUID(as_uuid=True), nullable=False),
    Column("scheduled_for", DateTime(timezone=True), nullable=False),
    # launched | skipped | buffered (waits for the schedule's running run; then launched or
    # skipped, by the same key)
    Column("outcome", Text, nullable=False),
    Column("reason", Text),
    Column("run_id", UUID(as_uuid=True)),
    Column("source", Text),
    # clock: a fire of the trigger; manual: a run-now request (key workflow-schedule-run-now:...)
    Column("kind", Text, nullable=False, server_default="clock"),
    # The W3C trace context the fire carries into its run's trigger_metadata.
    Column("traceparent", Text),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("first_delivered_at", DateTime(timezone=True), nullable=False, server_default=now),
    Column("last_delivered_at", DateTime(timezone=True), nullable=False, server_default=now),
    CheckConstraint("outcome IN ('launched', 'skipped', 'buffered')", name="outcome"),
    CheckConstraint("kind IN ('clock', 'manual')", name="kind"),
    Index(None, "schedule_id", "scheduled_for"),
    Index(None, "source", "last_delivered_at"),  # a finished Job's fire (latest_fire_for_job)
    Index(
        "ix_workflow_schedule_fires_schedule_id_buffered",
        "schedule_id",
        postgresql_where=text("outcome = 'buffered'"),
    ),
)

# Fires recorded per schedule and outcome, kept by a trigger on the ledger as each fire is
# recorded (migration 0002): the metrics read these, never the ledger. Pruning lowers no count.
workflow_schedule_fire_counts = Table(
    "workflow_schedule_fire_counts",
    metadata,
    Column("schedule_id", UUID(as_uuid=True), primary_key=True),
    Column("outcome", Text, primary_key=True),
    Column("fires", BigInteger, nullable=False),
)

# Skipped clock fires per schedule and reason (its first word: overlap, paused, missed, ...),
# kept by a trigger on the ledger (migration 0005), for the metrics.
workflow_schedule_skip_counts = Table(
    "workflow_schedule_skip_counts",
    metadata,
    Column("schedule_id", UUID(as_uuid=True), primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("fires", BigInteger, nullable=False),
)

# One row once the ledger has been pruned: fires scheduled before `pruned_before` may be gone
# from it, so a trigger refuses to claim any such key that is not still there (migration 0002).
workflow_schedule_fires_horizon = Table(
    "workflow_schedule_fires_horizon",
    metadata,
    Column("singleton", Boolean, primary_key=True, server_default=text("true")),
    Column("pruned_before", DateTime(timezone=True), nullable=False),
    Column("pruned_rows", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
    CheckConstraint("singleton", name="singleton"),
)

# What the operator derived from each WorkflowCalendar (migration 0007): its excluded dates
# (with why) between horizon_start and horizon_end, read by wfclock_policy_refusal.
workflow_calendars = Table(
    "workflow_calendars",
    metadata,
    Column("namespace", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("business_days_only", Boolean, nullable=False, server_default=text("false")),
    Column("horizon_start", Date, nullable=False),
    Column("horizon_end", Date, nullable=False),
    Column("holidays_version", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
)

workflow_calendar_dates = Table(
    "workflow_calendar_dates",
    metadata,
    Column("namespace", Text, primary_key=True),
    Column("calendar", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("reason", Text, nullable=False),
    ForeignKeyConstraint(
        ["namespace", "calendar"],
        ["workflow_calendars.namespace", "workflow_calendars.name"],
        ondelete="CASCADE",
    ),
)

# Clock fires each schedule launched or buffered, kept by a trigger on the ledger and never
# lowered by pruning (migration 0007): maxFires is counted against it.
workflow_schedule_clock_launches = Table(
    "workflow_schedule_clock_launches",
    metadata,
    Column("schedule_id", UUID(as_uuid=True), primary_key=True),
    Column("fires", BigInteger, nullable=False),
)
