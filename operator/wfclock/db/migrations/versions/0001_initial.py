"""Schedule state, workflow runs and the fire ledger.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _ts(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def upgrade() -> None:
    op.create_table(
        "workflow_schedules",
        sa.Column("schedule_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("workflow_id", UUID(as_uuid=True), nullable=False),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("trigger_type", sa.Text, nullable=False),
        _ts("run_at"),
        sa.Column("cron", sa.Text),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("status", sa.Text, nullable=False),
        _ts("trigger_effective_from", nullable=False, server_default=NOW),
        sa.Column("missed_fires", sa.Text, nullable=False, server_default="latest"),
        sa.Column("catch_up_window_seconds", sa.Integer, nullable=False, server_default="3600"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
        sa.Column("registered_kind", sa.Text),
        sa.Column("registered_name", sa.Text),
        _ts("last_fire_at"),
        _ts("next_fire_at"),
        sa.Column("last_fire_key", sa.Text),
        sa.Column("last_run_id", UUID(as_uuid=True)),
        sa.Column("last_run_status", sa.Text),
        sa.Column("last_error", sa.Text),
        _ts("deleted_at"),
        _ts("created_at", nullable=False, server_default=NOW),
        _ts("updated_at", nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("schedule_id", name="pk_workflow_schedules"),
        sa.CheckConstraint(
            "trigger_type IN ('schedule', 'recurring')",
            name="ck_workflow_schedules_trigger_type",
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'paused', 'disabled', 'completed', 'failed')",
            name="ck_workflow_schedules_status",
        ),
        sa.CheckConstraint(
            "(trigger_type = 'schedule' AND run_at IS NOT NULL AND cron IS NULL) OR "
            "(trigger_type = 'recurring' AND cron IS NOT NULL AND run_at IS NULL)",
            name="ck_workflow_schedules_trigger_shape",
        ),
    )
    op.create_index(
        "ix_workflow_schedules_tenant_workflow_id",
        "workflow_schedules",
        ["tenant", "workflow_id"],
    )
    op.create_table(
        "workflow_runs",
        sa.Column("run_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("workflow_id", UUID(as_uuid=True), nullable=False),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("payload_schema_ref", sa.Text),
        sa.Column("trigger_type", sa.Text, nullable=False),
        sa.Column("trigger_metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("trigger_fire_key", sa.Text),
        sa.Column("schedule_id", UUID(as_uuid=True)),
        _ts("created_at", nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("run_id", name="pk_workflow_runs"),
        sa.CheckConstraint(
            "trigger_type IN ('event', 'schedule', 'recurring', 'manual')",
            name="ck_workflow_runs_trigger_type",
        ),
    )
    op.create_index(
        "ix_workflow_runs_trigger_fire_key",
        "workflow_runs",
        ["trigger_fire_key"],
        unique=True,
        postgresql_where=sa.text("trigger_fire_key IS NOT NULL"),
    )
    op.create_index(
        "ix_workflow_runs_tenant_workflow_id_created_at",
        "workflow_runs",
        ["tenant", "workflow_id", "created_at"],
    )
    op.create_table(
        "workflow_schedule_fires",
        sa.Column("fire_key", sa.Text, nullable=False),
        sa.Column("schedule_id", UUID(as_uuid=True), nullable=False),
        _ts("scheduled_for", nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", UUID(as_uuid=True)),
        sa.Column("source", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        _ts("first_delivered_at", nullable=False, server_default=NOW),
        _ts("last_delivered_at", nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("fire_key", name="pk_workflow_schedule_fires"),
        sa.CheckConstraint(
            "outcome IN ('launched', 'skipped')", name="ck_workflow_schedule_fires_outcome"
        ),
    )
    op.create_index(
        "ix_workflow_schedule_fires_schedule_id_scheduled_for",
        "workflow_schedule_fires",
        ["schedule_id", "scheduled_for"],
    )


def downgrade() -> None:
    op.drop_table("workflow_schedule_fires")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_schedules")
