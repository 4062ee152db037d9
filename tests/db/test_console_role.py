"""`wfclock db console-role`: the console's login reads the columns the console shows, and
nothing else; it writes nothing."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from wfclock.console.data import READABLE, ConsoleData
from wfclock.core.status import FirePolicy
from wfclock.db.store import engine_for

LOGIN = "wfclock_console_dbtest"


def wfclock(env, *args):
    return subprocess.run(["wfclock", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def console_url(python_env, database_url, postgres):
    env = {**python_env, "WFCLOCK_CONSOLE_DB_PASSWORD": "first"}
    made = wfclock(env, "db", "console-role", LOGIN)
    assert made.returncode == 0, made.stderr
    assert f"console login {LOGIN}: read-only" in made.stdout
    again = wfclock({**env, "WFCLOCK_CONSOLE_DB_PASSWORD": "second"}, "db", "console-role", LOGIN)
    assert again.returncode == 0, again.stderr  # idempotent; the password is the latest
    yield database_url.replace("postgres@", f"{LOGIN}:second@")
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {LOGIN}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {LOGIN}")
        conn.execute(f"DROP ROLE {LOGIN}")


def test_the_console_login_reads_what_the_console_shows_and_nothing_more(console_url, add_schedule):
    state = add_schedule()
    data = ConsoleData(engine_for(console_url))
    assert data.known_namespaces() == {"acme": "acme"}
    assert set(data.schedules([str(state.schedule_id)])) == {str(state.schedule_id)}
    assert data.runs(["acme"], ["acme"]) == []
    # The calendars and launched fires, read as the operator reads them (store.calendars_of,
    # store.clock_launches): none derived, none launched.
    recurring = {
        "metadata": {"namespace": "acme", "uid": str(state.schedule_id)},
        "spec": {"trigger": {"type": "recurring", "calendars": ["office"], "maxFires": 3}},
    }
    assert data.fire_policies([recurring]) == {str(state.schedule_id): FirePolicy({}, 0)}
    with psycopg.connect(console_url, autocommit=True) as conn:
        for table, columns in READABLE.items():
            conn.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 1")
        for forbidden in (
            "SELECT quiet FROM workflow_schedules",
            "SELECT * FROM workflow_schedule_fire_counts",
            "SELECT * FROM wfclock_tenant_logins",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM workflow_runs")


def test_a_login_name_that_is_not_a_plain_identifier_is_refused(python_env):
    env = {**python_env, "WFCLOCK_CONSOLE_DB_PASSWORD": "pw"}
    done = wfclock(env, "db", "console-role", "Robert'); DROP TABLE")
    assert done.returncode == 2
    assert "use lower-case letters, digits and _" in done.stderr
    empty = wfclock({**python_env, "WFCLOCK_CONSOLE_DB_PASSWORD": ""}, "db", "console-role", "ok")
    assert empty.returncode == 2 and "$WFCLOCK_CONSOLE_DB_PASSWORD is empty" in empty.stderr
