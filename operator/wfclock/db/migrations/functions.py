"""Changing a function as the database holds it, for migrations: read back with
`pg_get_functiondef`, and exactly the named text replaced."""

from __future__ import annotations

from alembic import op

# `wfclock_fire` as migration 0008 made it (the launcher's one statement), which 0010 and 0011
# change in place.
FIRE_SIGNATURE = (
    "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, uuid, "
    "text, text, text, text, text)"
)


def raw_connection():
    """The driver's own connection (the migration's transaction): function bodies hold ':' and
    '%', which neither SQLAlchemy's text() nor a parameterised execute may read as
    placeholders."""
    return op.get_bind().connection.driver_connection


def patch_function(signature: str, old: str, new: str, count: int = 1) -> None:
    """Replaces `old` by `new` in the function `signature` (a regprocedure), refusing unless
    `old` is there exactly `count` times: a function some other change rewrote is not guessed
    at."""
    raw = raw_connection()
    (definition,) = raw.execute(
        f"SELECT pg_get_functiondef('{signature}'::regprocedure)"
    ).fetchone()
    if definition.count(old) != count:
        raise RuntimeError(f"{signature} does not hold {old.strip()!r} {count} time(s)")
    raw.execute(definition.replace(old, new))
