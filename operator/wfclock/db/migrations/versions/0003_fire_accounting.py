"""Fire accounting: how far each schedule's fires are accounted for in the ledger, and the
windows in which it was paused or invalid (a multirange: PostgreSQL 14 or later).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSTZMULTIRANGE

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every fire of the current trigger up to this instant is in the ledger (launched, skipped,
    # or missed with its reason); the operator's accounting sweep moves it forward.
    op.add_column(
        "workflow_schedules",
        sa.Column("accounted_until", sa.DateTime(timezone=True)),
    )
    op.execute("UPDATE workflow_schedules SET accounted_until = trigger_effective_from")
    op.alter_column("workflow_schedules", "accounted_until", nullable=False)
    # How late a fire may still start (the CronJob's startingDeadlineSeconds, spec default 300).
    # Every paused or invalid window [from, until) of the schedule: their fires never run.
    op.add_column(
        "workflow_schedules",
        sa.Column("quiet", TSTZMULTIRANGE, nullable=False, server_default="{}"),
    )
    # The latest problem with a fire's Job (stuck, failed), shown in the status; cleared when a
    # fire is delivered by its own Job again.
    op.add_column("workflow_schedules", sa.Column("fire_problem", sa.Text))
    op.add_column(
        "workflow_schedules",
        sa.Column("starting_deadline_seconds", sa.Integer, nullable=False, server_default="300"),
    )


def downgrade() -> None:
    op.drop_column("workflow_schedules", "starting_deadline_seconds")
    op.drop_column("workflow_schedules", "fire_problem")
    op.drop_column("workflow_schedules", "quiet")
    op.drop_column("workflow_schedules", "accounted_until")
