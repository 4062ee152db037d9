"""Time policies: a fire the launcher refuses by the schedule's daylight-saving policy or `L`.

- `workflow_schedules.dst_policy`: the recurring schedule's `spec.trigger.dstPolicy` (NULL: a
  registration made before policies, which keeps the CronJob's raw behaviour), read by the
  launcher for fires that come without a registration (catch-up, backfill).
- `wfclock_fire` gains a last argument, `p_refusal text DEFAULT NULL`, computed by the launcher
  from the registration (pure maths in `wfclock.core.dst`): when it is not null and the
  schedule's state refuses nothing else, the fire is recorded `skipped` with that reason and no
  run starts; a second delivery of it is a duplicate, as for every fire. The 14-argument form is
  dropped (a 14-argument call now reaches the new form through the default); the 13-argument
  form of 0004 keeps working the same way. Built on the function as 0006 (a Job of another
  registration) and 0007 (`wfclock_policy_refusal`, the calendars and bounds) left it: the
  state's refusals come first, then this policy's, then the calendars' and bounds'.

Revision ID: 0008
Revises: 0007
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_SIGNATURE = (
    "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, uuid, "
    "text, text, text, text)"
)
SIGNATURE = (
    "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, uuid, "
    "text, text, text, text, text)"
)


def _migration(file: str):
    """An earlier migration's module, read from its file beside this one (Alembic loads
    migrations by path, not as modules of a package)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"wfclock_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fire_0007() -> str:
    """`wfclock_fire` as 0007 left it: 0006's statement with 0007's call of
    `wfclock_policy_refusal` where the state's refusals end."""
    calendars = _migration("0007_calendars.py")
    return _replace_once(
        _migration("0006_foreign_job_key.py").FIRE,
        calendars._OLD_REFUSAL_END,
        calendars._NEW_REFUSAL_END,
    )


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"wfclock_fire changed: {old!r} is not found exactly once")
    return text.replace(old, new)


def fire_with_refusal(previous: str) -> str:
    """`wfclock_fire` as 0007 left it, with `p_refusal` as its last argument, refused where the schedule's
    state refusals are decided (a paused, deleted or superseded fire keeps that reason)."""
    text = _replace_once(
        previous,
        "p_source text, p_schema_ref text, p_channel text, p_traceparent text)",
        "p_source text, p_schema_ref text, p_channel text, p_traceparent text,\n"
        "    p_refusal text DEFAULT NULL)",
    )
    return _replace_once(
        text,
        "                THEN 'superseded: the Job was created for another cron or time zone'\n"
        "            ELSE wfclock_policy_refusal(s.schedule_id, p_at)\n"
        "            END AS refusal",
        "                THEN 'superseded: the Job was created for another cron or time zone'\n"
        "            -- A fire the schedule's time policy drops (daylight saving, L).\n"
        "            WHEN p_refusal IS NOT NULL THEN p_refusal\n"
        "            ELSE wfclock_policy_refusal(s.schedule_id, p_at)\n"
        "            END AS refusal",
    )


def upgrade() -> None:
    op.execute("ALTER TABLE workflow_schedules ADD COLUMN dst_policy text")
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(fire_with_refusal(_fire_0007()))
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO wfclock_launcher")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(_fire_0007())
    op.execute(f"REVOKE ALL ON FUNCTION {OLD_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {OLD_SIGNATURE} TO wfclock_launcher")
    op.execute("ALTER TABLE workflow_schedules DROP COLUMN dst_policy")
