"""Buffered fires: the ledger's horizon guard refuses a buffered claim, and a worker finishing
runs never waits for a schedule row it has no buffered fire to release from, nor fails on it.

- 0002's guard (`wfclock_refuse_pruned_fire`, before each insert into the ledger) refuses to
  claim a fire key older than the pruning horizon that the ledger no longer holds, but only for
  a claim that starts a run (`launched`). 0005 added `buffered`, a claim whose run starts
  later, by its own key, and the guard let it through: a late delivery of a pruned fire while
  a run was going (BufferOne) was buffered, and its release then started the fire a second
  time, or, its first run still in `workflow_runs`, failed on the runs' unique fire key inside
  the worker's own update of its run's status, so that run could never be finished. A
  buffered claim is now refused the same way (WF001, nothing written).
- 0005's trigger on `workflow_runs` (`wfclock_run_ended`) locked the run's schedule row as each
  run finished, whatever the schedule's overlap policy: two worker transactions finishing runs
  of two schedules in opposite orders (rows no one else touches) deadlocked on the schedule
  rows, and Postgres aborted one (40P01). It now calls `wfclock_release_after_run`, which
  locks the row only for a schedule whose policy is BufferOne or that has a buffered fire, and
  runs the release in a subtransaction: whatever fails there (a deadlock between two workers
  finishing runs of BufferOne schedules, which no order can prevent across their statements)
  leaves the fire buffered for the accounting sweep, which releases it within a sweep, and the
  worker's update stands. A policy changed to BufferOne while a run finishes can leave a fire
  buffered after that run the same way, until the sweep.

Both functions are changed as the database holds them (read back with `pg_get_functiondef`),
each by replacing exactly the text named here, and the downgrade replaces it back.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from wfclock.db.migrations.functions import patch_function as _patch
from wfclock.db.migrations.functions import raw_connection as _raw

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OLD_GUARD = "    IF NEW.outcome = 'launched' THEN\n"
_NEW_GUARD = "    IF NEW.outcome IN ('launched', 'buffered') THEN\n"

_OLD_RELEASE_CALL = "PERFORM wfclock_release_buffered("
_NEW_RELEASE_CALL = "PERFORM wfclock_release_after_run("

RELEASE_AFTER_RUN = r"""
CREATE FUNCTION wfclock_release_after_run(p_schedule_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
BEGIN
    -- Read without the row lock: a schedule with nothing to release is not locked, so workers
    -- finishing runs of Allow and Skip schedules never wait for each other here.
    IF NOT EXISTS (SELECT 1 FROM workflow_schedules s
                   WHERE s.schedule_id = p_schedule_id AND s.overlap_policy = 'BufferOne')
       AND NOT EXISTS (SELECT 1 FROM workflow_schedule_fires f
                       WHERE f.schedule_id = p_schedule_id AND f.outcome = 'buffered') THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM wfclock_release_buffered(p_schedule_id);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'wfclock: the buffered fire of schedule % is left to the accounting '
            'sweep: % (SQLSTATE %)', p_schedule_id, SQLERRM, SQLSTATE;
    END;
END
$fn$
"""


def upgrade() -> None:
    _patch("wfclock_refuse_pruned_fire()", _OLD_GUARD, _NEW_GUARD)
    _raw().execute(RELEASE_AFTER_RUN)
    op.execute("REVOKE ALL ON FUNCTION wfclock_release_after_run(uuid) FROM PUBLIC")
    _patch("wfclock_run_ended()", _OLD_RELEASE_CALL, _NEW_RELEASE_CALL, count=2)


def downgrade() -> None:
    _patch("wfclock_run_ended()", _NEW_RELEASE_CALL, _OLD_RELEASE_CALL, count=2)
    op.execute("DROP FUNCTION wfclock_release_after_run(uuid)")
    _patch("wfclock_refuse_pruned_fire()", _NEW_GUARD, _OLD_GUARD)
