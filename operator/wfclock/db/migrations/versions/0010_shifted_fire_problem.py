"""A shifted daylight-saving fire leaves a stuck Job's problem in place.

0005's `wfclock_fire` clears the schedule's `fire_problem` (a Job that could not deliver its
fire: an image that never pulls, a Secret gone) when a fire is launched, except when the
operator launched it itself (`recovery`, `catch-up`, `backfill`): those say nothing of whether
the schedule's Jobs work again. The fire the operator launches after a daylight-saving gap
(source `dst-shift`, migration 0008's policies) is one of those too; it cleared the problem, and
the status said the schedule's fires were healthy while its Jobs still could not start.

The function is changed as the database holds it (read back with `pg_get_functiondef`), by
replacing exactly the text named here; the downgrade replaces it back.

Revision ID: 0010
Revises: 0009
"""

from wfclock.db.migrations.functions import FIRE_SIGNATURE, patch_function

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_OLD = "AND p_source NOT IN ('recovery', 'catch-up', 'backfill')"
_NEW = "AND p_source NOT IN ('recovery', 'catch-up', 'backfill', 'dst-shift')"


def upgrade() -> None:
    patch_function(FIRE_SIGNATURE, _OLD, _NEW)


def downgrade() -> None:
    patch_function(FIRE_SIGNATURE, _NEW, _OLD)
