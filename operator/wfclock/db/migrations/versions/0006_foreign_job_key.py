"""A fire's key is left to the current trigger when a Job of another registration delivers it.

An edit of a recurring trigger (its cron or zone) published just before a fire and reconciled
just after it leaves the CronJob controller making that fire's Job from the CronJob as it was:
the Job carries the old cron and zone. The instant is at or after the trigger's last change
(`trigger_effective_from`), so the current trigger owes it when it fires then (a cron edit that
keeps the instant, a zone with the same offset). 0005's `wfclock_fire` claimed the key as
skipped ("superseded: the Job was created for another cron or time zone"), so the fire the new
trigger owed could never launch: the accounting sweep found its key spent. From here such a
delivery is refused without claiming the key (the launcher answers `skipped`, nothing is
written); the accounting sweep delivers the instant by the current trigger when it is one of
its fires, and nothing claims it when it is not. A delivery before the change, or one refused
for any other reason (paused, deleted, disabled ...), is recorded as before. Same signature:
the grants of 0005 stay.

Revision ID: 0006
Revises: 0005
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# 0005's statement with five changes (each found exactly once, or the migration refuses).
_CHANGES = [
    (
        "    v_at_iso text;\n",
        "    v_at_iso text;\n    v_unclaimed text;\n",
    ),
    (
        "            END AS refusal\n",
        """            END AS refusal,
            -- A Job of another registration delivering an instant at or after the trigger's
            -- last change (an edit published just before a fire and reconciled after it, when
            -- the CronJob controller made the Job from the CronJob as it was): the instant
            -- belongs to the current trigger, which may owe it. Its key is left unclaimed; the
            -- accounting sweep delivers it by the current trigger if that trigger fires then.
            coalesce(deleted_at IS NULL AND enabled AND status = 'scheduled'
                     AND trigger_type = 'recurring' AND p_at >= trigger_effective_from
                     AND NOT coalesce(quiet @> p_at, false)
                     AND (cron IS DISTINCT FROM p_cron OR timezone IS DISTINCT FROM p_timezone),
                     false) AS unclaimed
""",
    ),
    ("        FROM verdict\n", "        FROM verdict WHERE NOT unclaimed\n"),
    (
        """           (SELECT count(*) FROM notify)
        INTO v_found, v_claimed, v_outcome, v_reason, v_notified;
""",
        """           (SELECT count(*) FROM notify),
           (SELECT v.verdict_reason FROM verdict v WHERE v.unclaimed)
        INTO v_found, v_claimed, v_outcome, v_reason, v_notified, v_unclaimed;
""",
    ),
    (
        "        RETURNING 'duplicate'::text, f.run_id, coalesce(f.reason, 'first ' || f.outcome);\n",
        """        RETURNING 'duplicate'::text, f.run_id, coalesce(f.reason, 'first ' || f.outcome);
        IF NOT FOUND AND v_unclaimed IS NOT NULL THEN
            RETURN QUERY SELECT 'skipped'::text, NULL::uuid,
                v_unclaimed || '; its key is left to the current trigger';
        END IF;
""",
    ),
]


def _with_changes(text: str) -> str:
    for old, new in _CHANGES:
        if text.count(old) != 1:
            raise RuntimeError(f"0005's wfclock_fire changed: {old!r} is not found exactly once")
        text = text.replace(old, new)
    return text


def _previous_fire() -> str:
    """0005's statement, read from its migration beside this one (Alembic loads migrations by
    path, not as modules of a package)."""
    path = Path(__file__).with_name("0005_run_control.py")
    spec = importlib.util.spec_from_file_location("wfclock_migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FIRE.replace(
        "CREATE FUNCTION wfclock_fire(", "CREATE OR REPLACE FUNCTION wfclock_fire(", 1
    )


# The statement this migration installs (0008 builds on it).
FIRE = _with_changes(_previous_fire())


def upgrade() -> None:
    op.execute(FIRE)


def downgrade() -> None:
    op.execute(_previous_fire())
