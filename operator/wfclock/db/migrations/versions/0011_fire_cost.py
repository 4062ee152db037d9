"""A fire costs less inside `wfclock_fire`: two helpers are inlined, and a schedule with no time
bounds, fire limit or calendars does not call the policy refusal.

`bench/launcher_throughput.py` fell from 0.52 of a bare insert (2026-11-25) to 0.27. Two causes,
read from `auto_explain` of one fire:

- `wfclock_utc_iso` and `wfclock_clock_payload` (0005) are declared IMMUTABLE, but `to_char`
  and `jsonb_build_object` are STABLE. Postgres does not inline a SQL function whose body is
  more volatile than it is declared, so each fire parsed and planned both bodies again, one of
  them for every run inserted. They are now STABLE, which is what they are, and are inlined
  into the plans `wfclock_fire` keeps. Neither is used by an index.
- 0007 made every fire call `wfclock_policy_refusal`, a function with its own `search_path`
  (set and reset around each call) that reads the schedule row again. It can refuse only a
  schedule with `active_from`, `active_until`, `max_fires` or calendars; `wfclock_fire` now
  calls it only for one of those, from the row it has already read under the lock. A policy
  added to `wfclock_policy_refusal` later must add its column to that condition (the test
  `test_only_a_schedule_with_a_bound_or_a_calendar_is_asked_for_a_policy_refusal` lists them).

`wfclock_fire` is changed as the database holds it (read back with `pg_get_functiondef`), by
replacing exactly the text named here; the downgrade puts everything back.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from wfclock.db.migrations.functions import FIRE_SIGNATURE, patch_function

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OLD = "            ELSE wfclock_policy_refusal(s.schedule_id, p_at)\n"
_NEW = (
    "            WHEN s.active_from IS NOT NULL OR s.active_until IS NOT NULL\n"
    "                 OR s.max_fires IS NOT NULL OR cardinality(s.calendars) > 0\n"
    "                THEN wfclock_policy_refusal(s.schedule_id, p_at)\n"
)
_HELPERS = (
    "wfclock_utc_iso(timestamptz)",
    "wfclock_clock_payload(text, uuid, text, uuid, integer, text, text, text)",
)


def upgrade() -> None:
    for helper in _HELPERS:
        op.execute(f"ALTER FUNCTION {helper} STABLE")
    patch_function(FIRE_SIGNATURE, _OLD, _NEW)


def downgrade() -> None:
    patch_function(FIRE_SIGNATURE, _NEW, _OLD)
    for helper in _HELPERS:
        op.execute(f"ALTER FUNCTION {helper} IMMUTABLE")
