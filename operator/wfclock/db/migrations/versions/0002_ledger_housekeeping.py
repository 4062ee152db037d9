"""The fire ledger's housekeeping: an index for look-ups by Job, fire counts kept as fires are
recorded (a metrics scrape reads them, not the ledger), and the horizon below which the ledger
may have been pruned, with a guard that refuses to claim a fire key older than it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Taken shared by every launched fire the ledger records and exclusively by each prune batch: a
# launch never reads a horizon that a prune is about to move (wfclock.db.store.PRUNE_LOCK).
PRUNE_LOCK = 7406372002

COUNT_FIRE = """
CREATE FUNCTION wfclock_count_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        UPDATE workflow_schedule_fire_counts SET fires = fires - 1
        WHERE schedule_id = OLD.schedule_id AND outcome = OLD.outcome;
    END IF;
    INSERT INTO workflow_schedule_fire_counts AS c (schedule_id, outcome, fires)
    VALUES (NEW.schedule_id, NEW.outcome, 1)
    ON CONFLICT (schedule_id, outcome) DO UPDATE SET fires = c.fires + 1;
    RETURN NULL;
END $$
"""

REFUSE_PRUNED_FIRE = f"""
CREATE FUNCTION wfclock_refuse_pruned_fire() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    horizon timestamptz;
BEGIN
    -- Only a claim that starts a run is guarded: a record that starts none (skipped, missed)
    -- is let through, so what the operator knows about an old fire can still be written.
    IF NEW.outcome = 'launched' THEN
        PERFORM pg_advisory_xact_lock_shared({PRUNE_LOCK});
        SELECT pruned_before INTO horizon FROM workflow_schedule_fires_horizon;
        -- A key still in the ledger (each schedule's latest fire is never pruned) stays a
        -- duplicate; any other key this old may have been pruned, so it is never launched.
        IF NEW.scheduled_for < horizon
           AND NOT EXISTS (SELECT 1 FROM workflow_schedule_fires WHERE fire_key = NEW.fire_key)
        THEN
            RAISE EXCEPTION USING
                ERRCODE = 'WF001',
                MESSAGE = format(
                    'fire %s is older than the fire ledger''s horizon %s: fires before it may '
                    'have been pruned, so whether it already ran is unknown and it is not '
                    'launched',
                    NEW.fire_key,
                    to_char(horizon AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                HINT = 'The horizon moves with WFCLOCK_LEDGER_RETENTION_DAYS (wfclock db prune).';
        END IF;
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.create_index(
        "ix_workflow_schedule_fires_source_last_delivered_at",
        "workflow_schedule_fires",
        ["source", "last_delivered_at"],
    )
    op.create_table(
        "workflow_schedule_fire_counts",
        sa.Column("schedule_id", UUID(as_uuid=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("fires", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "outcome", name="pk_workflow_schedule_fire_counts"),
    )
    op.create_table(
        "workflow_schedule_fires_horizon",
        sa.Column("singleton", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pruned_rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("singleton", name="pk_workflow_schedule_fires_horizon"),
        sa.CheckConstraint("singleton", name="ck_workflow_schedule_fires_horizon_singleton"),
    )
    op.execute(COUNT_FIRE)
    # Created before the counts are filled: the trigger's lock holds back fires recorded
    # meanwhile until this migration commits, and the trigger counts them then.
    op.execute(
        "CREATE TRIGGER count_fires AFTER INSERT ON workflow_schedule_fires "
        "FOR EACH ROW EXECUTE FUNCTION wfclock_count_fire()"
    )
    op.execute(
        "CREATE TRIGGER count_fires_moved AFTER UPDATE OF outcome, schedule_id "
        "ON workflow_schedule_fires FOR EACH ROW "
        "WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome "
        "OR OLD.schedule_id IS DISTINCT FROM NEW.schedule_id) "
        "EXECUTE FUNCTION wfclock_count_fire()"
    )
    op.execute(
        "INSERT INTO workflow_schedule_fire_counts (schedule_id, outcome, fires) "
        "SELECT schedule_id, outcome, count(*) FROM workflow_schedule_fires GROUP BY 1, 2"
    )
    op.execute(REFUSE_PRUNED_FIRE)
    op.execute(
        "CREATE TRIGGER refuse_pruned_fires BEFORE INSERT ON workflow_schedule_fires "
        "FOR EACH ROW EXECUTE FUNCTION wfclock_refuse_pruned_fire()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER refuse_pruned_fires ON workflow_schedule_fires")
    op.execute("DROP FUNCTION wfclock_refuse_pruned_fire()")
    op.execute("DROP TRIGGER count_fires_moved ON workflow_schedule_fires")
    op.execute("DROP TRIGGER count_fires ON workflow_schedule_fires")
    op.execute("DROP FUNCTION wfclock_count_fire()")
    op.drop_table("workflow_schedule_fires_horizon")
    op.drop_table("workflow_schedule_fire_counts")
    op.drop_index("ix_workflow_schedule_fires_source_last_delivered_at", "workflow_schedule_fires")
