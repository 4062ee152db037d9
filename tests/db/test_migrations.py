import psycopg
import pytest
from sqlalchemy import inspect
from wfclock.db.migrate import downgrade, heads, upgrade
from wfclock.db.store import engine_for
from wfclock.db.tables import metadata

CONTRACT_COLUMNS = {
    "workflow_schedules": {
        "schedule_id",
        "tenant",
        "workflow_id",
        "workflow_version",
        "trigger_type",
        "run_at",
        "cron",
        "timezone",
        "enabled",
        "status",
        "registered_kind",
        "registered_name",
        "last_fire_at",
        "next_fire_at",
        "last_fire_key",
        "last_run_status",
        "last_error",
        "created_at",
        "updated_at",
    },
    "workflow_runs": {
        "run_id",
        "tenant",
        "workflow_id",
        "workflow_version",
        "status",
        "payload",
        "payload_schema_ref",
        "trigger_type",
        "trigger_metadata",
        "trigger_fire_key",
        "created_at",
    },
    "workflow_schedule_fires": {
        "fire_key",
        "schedule_id",
        "scheduled_for",
        "outcome",
        "reason",
        "run_id",
        "attempts",
        "first_delivered_at",
        "last_delivered_at",
    },
}


def test_migrations_have_a_single_head():
    assert len(heads()) == 1, f"several heads: {heads()}"


@pytest.fixture
def empty_url(postgres):
    url = postgres.create_database("migrations_empty")
    yield url
    engine_for(url).dispose()


def _tables(url):
    engine = engine_for(url)
    inspector = inspect(engine)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


def test_upgrade_from_empty_creates_the_contract_tables_matching_the_model(empty_url):
    upgrade(empty_url)
    tables = _tables(empty_url)
    for table, columns in CONTRACT_COLUMNS.items():
        assert columns <= tables[table], f"{table} misses {columns - tables[table]}"
    for table in metadata.sorted_tables:
        assert {c.name for c in table.columns} == tables[table.name]


def test_downgrade_to_base_then_upgrade_again(empty_url):
    upgrade(empty_url)
    downgrade(empty_url, "base", allow_ledger_loss=True)
    engine_for(empty_url).dispose()
    assert set(_tables(empty_url)) == {"alembic_version"}
    engine_for(empty_url).dispose()
    upgrade(empty_url)
    assert set(CONTRACT_COLUMNS) <= set(_tables(empty_url))


def test_the_fire_payloads_helpers_are_inlined_into_the_plans_that_call_them(database_url):
    """Migration 0011: declared IMMUTABLE over STABLE built-ins, they were planned again on every
    fire; as STABLE, Postgres inlines them, so no call of theirs is left in a plan."""
    with psycopg.connect(database_url) as conn:
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN VERBOSE SELECT wfclock_utc_iso(now()), wfclock_clock_payload("
                "'recurring', gen_random_uuid(), 'UTC', gen_random_uuid(), 1, '0 * * * *', "
                "'2026-11-27T10:00:00Z', '2026-11-27T10:00:01Z')"
            )
        )
    assert "to_char" in plan and "jsonb_build_object" in plan
    assert "wfclock_utc_iso" not in plan and "wfclock_clock_payload" not in plan


def test_0011_downgrades_to_0010s_functions_exactly(empty_url):
    functions = (
        "SELECT p.oid::regprocedure::text, p.provolatile, pg_get_functiondef(p.oid) FROM pg_proc p "
        "WHERE p.proname IN ('wfclock_fire', 'wfclock_utc_iso', 'wfclock_clock_payload') ORDER BY 1"
    )

    def read() -> list:
        with psycopg.connect(empty_url) as conn:
            return conn.execute(functions).fetchall()

    upgrade(empty_url, "0010")
    before = read()
    upgrade(empty_url)
    assert read() != before
    downgrade(empty_url, "0010")
    assert read() == before
    engine_for(empty_url).dispose()


def test_fire_key_is_unique_in_runs_and_ledger(database_url):
    with psycopg.connect(database_url) as conn:
        unique = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_workflow_runs_trigger_fire_key'"
        ).fetchone()[0]
    assert "UNIQUE" in unique and "trigger_fire_key IS NOT NULL" in unique


def test_a_downgrade_that_drops_the_ledger_is_refused_unless_allowed(empty_url):
    from wfclock.db.migrate import LedgerLossRefused

    upgrade(empty_url)
    for target in ("base", "0001"):
        with pytest.raises(LedgerLossRefused, match="--i-understand-this-deletes-the-fire-ledger"):
            downgrade(empty_url, target)
    engine_for(empty_url).dispose()
    assert {"workflow_schedule_fires", "workflow_schedule_fire_counts"} <= set(_tables(empty_url))


def test_0002_counts_the_fires_already_in_the_ledger(empty_url):
    from wfclock.db.store import fire_counts

    upgrade(empty_url, "0001")
    with psycopg.connect(empty_url) as conn:
        conn.execute(
            "INSERT INTO workflow_schedules (schedule_id, tenant, namespace, name, workflow_id, "
            "workflow_version, trigger_type, cron, timezone, status) VALUES "
            "('00000000-0000-0000-0000-000000000001', 'acme', 'acme', 'x', "
            "'00000000-0000-0000-0000-000000000002', 1, 'recurring', '0 * * * *', 'UTC', "
            "'scheduled')"
        )
        conn.execute(
            "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome) "
            "SELECT 'k' || i, '00000000-0000-0000-0000-000000000001', now(), "
            "CASE WHEN i % 3 = 0 THEN 'skipped' ELSE 'launched' END "
            "FROM generate_series(1, 30) AS i"
        )
    upgrade(empty_url)
    assert fire_counts(engine_for(empty_url)) == {
        ("launched", "recurring"): 20,
        ("skipped", "recurring"): 10,
    }


def test_a_database_migrated_by_a_newer_release_is_left_as_it_is_by_upgrade_to_head(empty_url):
    """A `helm rollback` runs the older release's migrate step on a database a newer release
    already migrated: `head` leaves it (migrations only add), another target is refused."""
    upgrade(empty_url)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    assert upgrade(empty_url) == ["9999"]
    with pytest.raises(ValueError, match="revision 9999, newer than this wfclock knows"):
        upgrade(empty_url, heads()[0])
    with psycopg.connect(empty_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "9999"
