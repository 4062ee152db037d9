"""`wfclock db upgrade` / `downgrade`: Alembic, configured in code, migrations shipped in the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import create_engine

from wfclock.db.urls import sqlalchemy_url

MIGRATIONS = Path(__file__).with_name("migrations")
LEDGER_LOSS_FLAG = "--i-understand-this-deletes-the-fire-ledger"
# What undoing each revision loses of the fire ledger's promise (one run per fire key, ever).
LEDGER_REVISIONS = {
    "0001": "drops the fire ledger (workflow_schedule_fires) with every table",
    "0002": "drops the ledger's pruning horizon and the guard that refuses pruned fire keys",
}


class LedgerLossRefused(ValueError):
    """A downgrade that would lose the fire ledger, asked for without saying so."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> list[str]:
    """Upgrades to `revision`. A database already at a revision this wfclock does not know (a
    newer release migrated it, and a `helm rollback` runs this release's migrate step) is left as
    it is when the target is `head`: migrations only ever add what the release before them
    still runs with (docs/day-two.md). Returns the unknown revisions found, if any."""
    config = alembic_config(url)
    newer = unknown_revisions(config)
    if newer and revision == "head":
        return newer
    if newer:
        raise ValueError(
            f"the database is at revision {', '.join(newer)}, newer than this wfclock knows "
            f"(its head is {', '.join(heads(url))}); upgrade to 'head' leaves it as it is"
        )
    command.upgrade(config, revision)
    return []


def _current(config: Config) -> tuple[str, ...]:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()


def unknown_revisions(config: Config) -> list[str]:
    """The database's revisions that this wfclock's migrations do not contain."""
    known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
    return [r for r in _current(config) if r not in known]


def downgrade(url: str, revision: str, *, allow_ledger_loss: bool = False) -> None:
    """Downgrades to `revision`; one that undoes the fire ledger or its guard (see
    LEDGER_REVISIONS) is refused unless `allow_ledger_loss`: after it, old fire keys could be
    claimed again (a backfill over an old window would start every run a second time)."""
    config = alembic_config(url)
    lost = [
        LEDGER_REVISIONS[r] for r in revisions_undone(config, revision) if r in LEDGER_REVISIONS
    ]
    if lost and not allow_ledger_loss:
        raise LedgerLossRefused(
            f"downgrading to {revision} {'; it '.join(lost)}. Fire keys already claimed could "
            "then be claimed again, and a backfill or a re-run Job would start a second run for "
            f"a fire that already ran. Export the ledger first if you need it, then pass "
            f"{LEDGER_LOSS_FLAG} to go ahead."
        )
    command.downgrade(config, revision)


def revisions_undone(config: Config, revision: str) -> list[str]:
    """The revisions a downgrade to `revision` would undo, from the database's current one."""
    current = _current(config)
    if not current:
        return []
    script = ScriptDirectory.from_config(config)
    try:
        steps = script.iterate_revisions(current, revision)
        return [s.revision for s in steps if s.revision != revision]
    except RevisionError as exc:
        known = ", ".join(["base", *(s.revision for s in script.walk_revisions())])
        raise ValueError(
            f"cannot downgrade to {revision!r}: {exc}; name a revision: {known}"
        ) from None


def heads(url: str = "postgresql://unused/") -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config(url)).get_heads())
