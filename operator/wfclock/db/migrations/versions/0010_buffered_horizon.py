"""A buffered claim meets the ledger's horizon guard, as a launched one does.

0002's guard (`wfclock_refuse_pruned_fire`, before each insert into the ledger) refuses to claim
a fire key older than the pruning horizon that the ledger no longer holds, but only for a claim
that starts a run (`launched`). 0005 added `buffered`, a claim whose run starts later, by its
own key, when the schedule's running run finishes, and which the guard let through: a late
delivery of a pruned fire while a run was going (BufferOne) was buffered, and its release then
started the fire a second time, or, its first run still in `workflow_runs`, failed on the runs'
unique fire key inside the worker's own update of its run's status, so the worker could never
finish that run. From here a buffered claim is refused the same way (WF001, nothing written).
The change is made to the function as the database holds it (read back with
`pg_get_functiondef`), and its downgrade removes just that.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_OLD_GUARD = "    IF NEW.outcome = 'launched' THEN\n"
_NEW_GUARD = "    IF NEW.outcome IN ('launched', 'buffered') THEN\n"

_GUARD_DEFINITION = """
SELECT pg_get_functiondef(p.oid) FROM pg_proc p
WHERE p.oid = 'wfclock_refuse_pruned_fire()'::regprocedure
"""


def _patch_guard(old: str, new: str) -> None:
    # The driver's own connection (same transaction): the definition holds ':' and '%', which
    # neither SQLAlchemy's text() nor a parameterised execute may read as placeholders.
    raw = op.get_bind().connection.driver_connection
    (definition,) = raw.execute(_GUARD_DEFINITION).fetchone()
    if definition.count(old) != 1:
        raise RuntimeError(f"wfclock_refuse_pruned_fire has no single {old.strip()!r} to change")
    raw.execute(definition.replace(old, new))


def upgrade() -> None:
    _patch_guard(_OLD_GUARD, _NEW_GUARD)


def downgrade() -> None:
    _patch_guard(_NEW_GUARD, _OLD_GUARD)
