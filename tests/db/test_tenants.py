"""Tenants sealed off: what a tenant's launcher pods hold can fire that tenant's schedules and
nothing else, through SQL or through the launcher. Against a real Postgres that checks
passwords for every login but the administrator."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from wfclock.controller.tenants import TenantLogins, installation_of, login_name, tenant_url
from wfclock.db import store
from wfclock.db.store import engine_for as engine_for_url
from wfclock.launcher import ClockFire, Registration, UnknownSchedule, launch
from wfclock.settings import Settings

from launcher_job.main import main as launcher_main

from ..conftest import NOW, make_state

HOUR = NOW.replace(minute=0)
REGISTRATION = Registration("0 * * * *", "Europe/Berlin")


@pytest.fixture
def logins(engine, database_url):
    return TenantLogins(engine, Settings(database_url=database_url, tenant_credential_key="k1"))


@pytest.fixture
def schedules(add_schedule):
    return {
        "acme": add_schedule(make_state(tenant="acme")),
        "globex": add_schedule(make_state(tenant="globex", namespace="globex")),
    }


def fire(url, schedule_id, at=HOUR):
    with psycopg.connect(url, autocommit=True) as conn:
        return launch(conn, ClockFire(schedule_id, at, "job", REGISTRATION), now=NOW)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM workflow_schedules",
        "SELECT * FROM workflow_runs",
        "SELECT * FROM workflow_schedule_fires",
        "SELECT * FROM wfclock_tenant_logins",
        "UPDATE workflow_schedules SET workflow_version = 99 WHERE tenant = 'globex'",
        "DELETE FROM workflow_schedule_fires",
        "INSERT INTO workflow_runs (run_id, tenant, workflow_id, workflow_version, payload, "
        "trigger_type) VALUES (gen_random_uuid(), 'globex', gen_random_uuid(), 1, '{}', 'manual')",
        "UPDATE wfclock_tenant_logins SET tenant = 'globex'",
    ],
)
def test_a_tenant_login_has_no_right_on_any_table(logins, schedules, statement):
    with (
        psycopg.connect(logins.url_for("acme"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_a_tenant_login_fires_its_own_schedules_and_no_other_tenants(logins, schedules, engine):
    acme_url = logins.url_for("acme")
    with pytest.raises(UnknownSchedule):
        fire(acme_url, schedules["globex"].schedule_id)
    assert store.list_fires(engine, schedules["globex"].schedule_id) == []
    assert fire(acme_url, schedules["acme"].schedule_id).outcome == "launched"
    assert fire(acme_url, schedules["acme"].schedule_id).outcome == "duplicate"
    (run,) = store.list_runs(engine)
    assert run["tenant"] == "acme"


def test_through_the_launcher_another_tenants_schedule_is_unusable_input(logins, schedules, engine):
    env = {
        "WFCLOCK_DATABASE_URL": logins.url_for("acme"),
        "WFCLOCK_SCHEDULE_ID": str(schedules["globex"].schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(HOUR.timestamp()) // 60}",
        "WFCLOCK_CRON": "0 * * * *",
        "WFCLOCK_TIMEZONE": "Europe/Berlin",
    }
    assert launcher_main(env) == 2
    assert store.list_fires(engine) == [] and store.list_runs(engine) == []


def test_a_tenant_login_cannot_claim_a_future_key_to_block_a_real_fire(logins, schedules):
    with (
        psycopg.connect(logins.url_for("acme"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InvalidParameterValue),
    ):
        conn.execute(
            "SELECT * FROM wfclock_fire(%s, now() + interval '1 day', 'k', 'x', 'x', "
            "'0 * * * *', 'Europe/Berlin', true, NULL, gen_random_uuid(), 'job', NULL, 'c')",
            (schedules["acme"].schedule_id,),
        )


def test_rotating_the_key_changes_each_login_once_and_the_old_password_stops_working(
    logins, schedules, engine, database_url
):
    old_url = logins.url_for("acme")
    assert fire(old_url, schedules["acme"].schedule_id).outcome == "launched"
    # A restart with the same key writes nothing.
    login = login_name("acme", installation_of(database_url))
    password = logins.url_for("acme").split(":")[2].split("@")[0]
    assert not store.ensure_tenant_login(engine, login, "acme", password, _fp(password))
    rotated = TenantLogins(engine, Settings(database_url=database_url, tenant_credential_key="k2"))
    new_url = rotated.url_for("acme")
    assert new_url != old_url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(old_url).close()
    later = HOUR - timedelta(hours=1)
    assert fire(new_url, schedules["acme"].schedule_id, later).outcome == "launched"


def _fp(password):
    from wfclock.controller.tenants import fingerprint

    return fingerprint(password)


def test_login_names_stay_within_postgres_limits():
    assert login_name("acme", "ab12cd") == "wfclock_t_ab12cd_acme"
    long = login_name("a" * 63)
    assert len(long) <= 63 and long != login_name("a" * 62 + "b")


def test_replicas_creating_a_new_tenants_login_at_once_all_succeed(engine, database_url):
    """Eight replicas at once, for ten new tenants: concurrent CREATE, ALTER and GRANT of one
    role used to fail one of them with "tuple concurrently updated" (seen in CI)."""
    settings = Settings(database_url=database_url, tenant_credential_key="k1")
    for _ in range(10):
        tenant = f"t{uuid.uuid4().hex[:10]}"
        replicas = [TenantLogins(engine, settings) for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            urls = list(pool.map(lambda logins, t=tenant: logins.url_for(t), replicas))
        assert len(set(urls)) == 1
        psycopg.connect(urls[0]).close()


def test_a_tenant_login_cannot_spend_another_tenants_key_or_forge_its_own(
    logins, schedules, engine
):
    """The key is derived in the database from the schedule and instant, never taken as given."""
    globex_key = f"workflow-schedule-fire:{schedules['globex'].schedule_id}:2026-11-25T11:00:00Z"
    with (
        psycopg.connect(logins.url_for("acme"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InvalidParameterValue, match="is not the key"),
    ):
        conn.execute(
            "SELECT * FROM wfclock_fire(%s, %s, %s, 'x', 'x', '0 * * * *', 'Europe/Berlin', "
            "true, NULL, gen_random_uuid(), 'job', NULL, 'c')",
            (schedules["acme"].schedule_id, HOUR, globex_key),
        )
    assert store.list_fires(engine) == []
    assert fire(logins.url_for("globex"), schedules["globex"].schedule_id).outcome == "launched"


def test_a_second_installation_on_the_same_server_never_adopts_the_first_ones_logins(
    logins, schedules, engine, postgres
):
    from wfclock.db.migrate import upgrade

    staging_url = postgres.create_database(f"staging_{uuid.uuid4().hex[:8]}")
    upgrade(staging_url)
    staging = TenantLogins(
        engine_for_url(staging_url), Settings(database_url=staging_url, tenant_credential_key="s")
    )
    production_acme, staging_acme = logins.url_for("acme"), staging.url_for("acme")
    assert production_acme.split(":")[1] != staging_acme.split(":")[1]  # two logins
    # Staging's acme login reaches production's database but fires nothing there.
    production_db = production_acme.rsplit("/", 1)[1]
    across = staging_acme.rsplit("/", 1)[0] + "/" + production_db
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="belongs to no tenant"):
        fire(across, schedules["acme"].schedule_id)
    assert fire(production_acme, schedules["acme"].schedule_id).outcome == "launched"


def test_the_administrators_query_parameters_never_reach_a_tenants_url():
    admin = (
        "postgresql://wfadmin:S3cret@db:5432/wfclock?user=wfadmin&password=S3cret&sslmode=require"
    )
    url = tenant_url(admin, "wfclock_t_x_acme", "pw")
    assert url == "postgresql://wfclock_t_x_acme:pw@db:5432/wfclock?sslmode=require"
    assert psycopg.conninfo.conninfo_to_dict(url)["user"] == "wfclock_t_x_acme"


def test_a_login_that_administers_the_launcher_role_is_not_taken_for_a_tenant_login(
    schedules, database_url
):
    """On PostgreSQL 16 and later, the operator's login that creates wfclock_launcher (with
    CREATEROLE, not a superuser) is recorded as a member of it WITH ADMIN OPTION; such a login is
    the operator, never a tenant's launcher login refused for belonging to no tenant."""
    name, password = f"wfclock_ops_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        admin.execute(f"GRANT wfclock_launcher TO {name} WITH ADMIN OPTION")
    try:
        url = database_url.replace("postgres@", f"{name}:{password}@", 1)
        assert fire(url, schedules["acme"].schedule_id).outcome == "launched"
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {name}")


def test_writing_a_login_never_waits_for_a_single_key_advisory_lock_of_its_hash(
    engine, database_url
):
    """The login's lock shares no key with wfclock's other advisory locks. It was the one-key
    lock `hashtext('wfclock-login:' || login)`, an int4 that the accounting sweep's session lock
    (0x77667363) can equal: a tenant named to match blocked every login write while a sweep ran,
    and the sweep itself, which writes a login when a launcher pod lost its Secret, waited on
    its own lock for good (holding it: no replica swept again). The one-key lock held here
    stands for the sweep's, were its number that login's hash."""
    import sqlalchemy

    login = f"wfclock_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as holder:
        (key,) = holder.execute("SELECT hashtext('wfclock-login:' || %s)", (login,)).fetchone()
        holder.execute("SELECT pg_advisory_lock(%s::bigint)", (key,))
        writer = sqlalchemy.create_engine(
            store.sqlalchemy_url(database_url), connect_args={"options": "-c lock_timeout=5s"}
        )
        try:
            assert store.ensure_tenant_login(writer, login, "acme", "pw", "fp1")
        finally:
            writer.dispose()
    assert not store.ensure_tenant_login(engine, login, "acme", "pw", "fp1")
