"""`python -m launcher_job` as a real process: the Job container's contract."""

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.db.store import list_fires, list_runs

from launcher_job.main import main as launcher_main

from ..conftest import make_state, one_time_state


def run_launcher(env, **extra):
    result = subprocess.run(
        [sys.executable, "-m", "launcher_job"],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {result.stdout!r} / {result.stderr!r}"
    return result.returncode, json.loads(lines[0]), result.stderr


def _hourly_fire_env(state) -> dict[str, str]:
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return {
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
    }


def minute_fire(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) - timedelta(minutes=5)


def test_cronjob_fire_derives_scheduled_for_from_the_job_name(python_env, engine, add_schedule):
    state = add_schedule(make_state(cron="*/5 * * * *", timezone="UTC", registered_name="wfs-x"))
    at = minute_fire(datetime.now(UTC)).replace(minute=0)
    job = f"wfs-x-{int(at.timestamp()) // 60}"
    env = {"WFCLOCK_SCHEDULE_ID": str(state.schedule_id), "WFCLOCK_JOB_NAME": job}
    code, line, _ = run_launcher(python_env, **env, WFCLOCK_CRONJOB_NAME="wfs-x")
    assert code == 0 and line["outcome"] == "launched"
    assert line["fireKey"] == f"workflow-schedule-fire:{state.schedule_id}:{at:%Y-%m-%dT%H:%M:%SZ}"
    code, again, _ = run_launcher(python_env, **env)
    assert code == 0 and again["outcome"] == "duplicate" and again["runId"] == line["runId"]
    (run,) = list_runs(engine)
    assert run["payload"]["scheduledFor"] == f"{at:%Y-%m-%dT%H:%M:%SZ}"


def test_one_time_fire_uses_wfclock_scheduled_for(python_env, engine, add_schedule):
    run_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    state = add_schedule(one_time_state(run_at))
    code, line, _ = run_launcher(
        python_env,
        WFCLOCK_SCHEDULE_ID=str(state.schedule_id),
        WFCLOCK_SCHEDULED_FOR=run_at.isoformat(),
    )
    assert (code, line["outcome"]) == (0, "launched")
    assert list_runs(engine)[0]["payload"]["scheduledFor"] == run_at.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WFCLOCK_JOB_NAME": "nightly-manual-run"}, "carries no scheduled time"),
        ({"WFCLOCK_JOB_NAME": "wfs-x-12"}, "not a plausible scheduled time"),
        ({"WFCLOCK_JOB_NAME": "other-29393040"}, "expected wfs-x-<unix minutes>"),
        ({"WFCLOCK_SCHEDULED_FOR": "tomorrow at nine"}, "not an RFC 3339 timestamp"),
        ({"WFCLOCK_SCHEDULED_FOR": "2026-03-08T14:00:00"}, "not an RFC 3339 timestamp"),
        (
            {"WFCLOCK_SCHEDULE_ID": "not-a-uuid", "WFCLOCK_JOB_NAME": "wfs-x-29393040"},
            "is not a UUID",
        ),
        (
            {"WFCLOCK_SCHEDULE_ID": str(uuid.uuid4()), "WFCLOCK_JOB_NAME": "wfs-x-29393040"},
            "no schedule with id",
        ),
        (
            {"WFCLOCK_DATABASE_URL": "mysql://nope", "WFCLOCK_JOB_NAME": "wfs-x-29393040"},
            "postgresql:// URL",
        ),
        (
            {
                "WFCLOCK_DATABASE_URL": "postgresql://h/db?sslmode=bogus=1",
                "WFCLOCK_JOB_NAME": "wfs-x-29393040",
            },
            "not a usable Postgres URL",
        ),
        ({}, "set WFCLOCK_JOB_NAME"),
    ],
)
def test_unusable_input_exits_2_with_a_clear_message_and_writes_nothing(
    python_env, engine, add_schedule, env, message
):
    state = add_schedule(make_state(registered_name="wfs-x"))
    env = {"WFCLOCK_SCHEDULE_ID": str(state.schedule_id), "WFCLOCK_CRONJOB_NAME": "wfs-x", **env}
    code, line, stderr = run_launcher(python_env, **env)
    assert code == 2 and line["outcome"] == "error"
    assert message in line["reason"] and message in stderr
    assert list_fires(engine) == [] and list_runs(engine) == []


def test_database_down_exits_75_then_the_retry_launches_exactly_once(
    postgres, python_env, engine, add_schedule
):
    env = _hourly_fire_env(add_schedule(make_state(cron="0 * * * *", timezone="UTC")))
    engine.dispose()
    postgres.stop()
    try:
        code, line, _ = run_launcher(python_env, **env, WFCLOCK_CONNECT_BUDGET_SECONDS="2")
        assert code == 75 and "database unavailable" in line["reason"]
    finally:
        postgres.start()
    assert list_fires(engine) == [] and list_runs(engine) == []
    outcomes = [run_launcher(python_env, **env)[1]["outcome"] for _ in range(2)]
    assert outcomes == ["launched", "duplicate"]
    assert len(list_runs(engine)) == 1


def test_launcher_imports_neither_kopf_nor_the_kubernetes_client(python_env):
    probe = (
        "import sys, runpy; sys.argv=['launcher_job']\n"
        "try:\n    runpy.run_module('launcher_job', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf','kubernetes','sqlalchemy','pydantic'))\n"
        "print('IMPORTED', bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=python_env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "IMPORTED []" in out


def test_a_job_registered_for_an_older_cron_starts_no_run(python_env, engine, add_schedule):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC", registered_name="wfs-x"))
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    env = {
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
        "WFCLOCK_CRON": "0 */2 * * *",  # what the Job was created for before an edit
        "WFCLOCK_TIMEZONE": "UTC",
    }
    code, line, _ = run_launcher(python_env, **env)
    assert (code, line["outcome"]) == (0, "skipped") and "another cron" in line["reason"]
    assert list_runs(engine) == [] and list_fires(engine) == []
    # The instant is also a fire of the current cron, after its last change: that trigger
    # still owes it, so the old Job's refusal left its key unclaimed (migration 0006).
    code, line, _ = run_launcher(python_env, **{**env, "WFCLOCK_CRON": "0 * * * *"})
    assert line["outcome"] == "launched"
    code, line, _ = run_launcher(python_env, **env)
    assert line["outcome"] == "duplicate"
    assert len(list_runs(engine)) == 1


def test_a_database_restart_within_the_connect_budget_costs_no_retry_of_the_job(
    postgres, python_env, engine, add_schedule
):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    env = {**python_env, **_hourly_fire_env(state), "WFCLOCK_CONNECT_BUDGET_SECONDS": "40"}
    engine.dispose()
    postgres.stop()
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "launcher_job"], env=env, stdout=subprocess.PIPE, text=True
        )
        time.sleep(2)
    finally:
        postgres.start()
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0 and json.loads(out)["outcome"] == "launched"


def test_a_burst_of_fires_beyond_the_connection_limit_ends_in_one_run_each(
    database_url, engine, add_schedule
):
    """The top of the hour: far more launchers at once than the database has connections for
    (here a limit of 3 on the test database); each waits its turn with jitter, none is lost."""
    states = [add_schedule(make_state(cron="0 * * * *", timezone="UTC")) for _ in range(40)]
    engine.dispose()
    role = f"burst_{uuid.uuid4().hex[:8]}"  # limits bind roles that are not superusers
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'burst' CONNECTION LIMIT 3")
        admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        admin.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}")
    limited_url = database_url.replace("postgresql://postgres@", f"postgresql://{role}:burst@")
    envs = [
        {
            **_hourly_fire_env(state),
            "WFCLOCK_DATABASE_URL": limited_url,
            "WFCLOCK_CONNECT_BUDGET_SECONDS": "60",
        }
        for state in states
    ]
    with ThreadPoolExecutor(len(envs)) as pool:
        codes = list(pool.map(launcher_main, envs))
    assert codes == [0] * len(envs)
    assert len(list_runs(engine)) == len(envs)


# --- database errors other than an unreachable server: every exit prints its JSON line ---------


@pytest.fixture
def admin(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def test_a_database_without_the_wfclock_tables_exits_2_naming_the_fix(postgres, python_env):
    url = postgres.create_database(f"no_schema_{uuid.uuid4().hex[:8]}")
    env = {**_hourly_fire_env(make_state()), "WFCLOCK_DATABASE_URL": url}
    code, line, stderr = run_launcher(python_env, **env)
    assert (code, line["outcome"]) == (2, "error"), stderr
    assert "has no wfclock tables" in line["reason"] and "wfclock db upgrade" in line["reason"]
    assert "Traceback" not in stderr


def test_a_role_without_privileges_exits_2_naming_the_role(
    postgres, python_env, admin, engine, add_schedule
):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    role = f"nogrants_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    url = python_env["WFCLOCK_DATABASE_URL"].replace("postgres@", f"{role}:pw@")
    code, line, stderr = run_launcher(
        python_env, **_hourly_fire_env(state), WFCLOCK_DATABASE_URL=url
    )
    assert (code, line["outcome"]) == (2, "error"), stderr
    assert "permission denied" in line["reason"] and role in line["reason"]
    assert list_fires(engine) == [] and list_runs(engine) == []


def test_a_read_only_database_exits_75_then_the_retry_launches_exactly_once(
    python_env, admin, engine, add_schedule
):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    database = admin.info.dbname
    admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    try:
        code, line, stderr = run_launcher(python_env, **_hourly_fire_env(state))
    finally:
        admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    assert (code, line["outcome"]) == (75, "error"), stderr
    assert "read-only" in line["reason"] and "retry" in line["reason"]
    assert list_fires(engine) == []
    outcomes = [run_launcher(python_env, **_hourly_fire_env(state))[1]["outcome"] for _ in "ab"]
    assert outcomes == ["launched", "duplicate"] and len(list_runs(engine)) == 1


def test_a_statement_timeout_exits_75_then_the_retry_launches_exactly_once(
    python_env, database_url, engine, add_schedule
):
    import psycopg

    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    impatient = f"{database_url}?options=-c%20statement_timeout%3D300"
    with psycopg.connect(database_url) as holder:  # another session holds the schedule's row
        holder.execute(
            "SELECT 1 FROM workflow_schedules WHERE schedule_id = %s FOR UPDATE",
            (state.schedule_id,),
        )
        started = time.monotonic()
        code, line, stderr = run_launcher(
            python_env, **_hourly_fire_env(state), WFCLOCK_DATABASE_URL=impatient
        )
    # The URL's own timeout (300 ms) applies, not the launcher's default (30 s).
    assert time.monotonic() - started < 10
    assert (code, line["outcome"]) == (75, "error"), stderr
    assert "statement timeout" in line["reason"] and "retry" in line["reason"]
    assert list_fires(engine) == []
    code, line, _ = run_launcher(
        python_env, **_hourly_fire_env(state), WFCLOCK_DATABASE_URL=impatient
    )
    assert (code, line["outcome"]) == (0, "launched") and len(list_runs(engine)) == 1


def test_an_unexpected_database_error_exits_70_with_its_json_line_and_traceback(
    python_env, admin, engine, add_schedule
):
    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    admin.execute(
        "CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'runs are frozen by the test'; END $$"
    )
    admin.execute(
        "CREATE TRIGGER refuse_runs BEFORE INSERT ON workflow_runs "
        "FOR EACH ROW EXECUTE FUNCTION refuse_runs()"
    )
    code, line, stderr = run_launcher(python_env, **_hourly_fire_env(state))
    assert (code, line["outcome"]) == (70, "error")
    assert line["reason"].startswith("unexpected error") and "runs are frozen" in line["reason"]
    assert "Traceback" in stderr  # for whoever reads the pod's log
    assert list_fires(engine) == [] and list_runs(engine) == []


def test_sigterm_during_a_fire_exits_75_with_its_json_line(
    python_env, database_url, engine, add_schedule
):
    import signal

    import psycopg
    from wfclock_devstack.processes import wait_until

    state = add_schedule(make_state(cron="0 * * * *", timezone="UTC"))
    with psycopg.connect(database_url) as holder:  # the fire waits on the schedule's row lock
        holder.execute(
            "SELECT 1 FROM workflow_schedules WHERE schedule_id = %s FOR UPDATE",
            (state.schedule_id,),
        )
        launcher = subprocess.Popen(
            [sys.executable, "-m", "launcher_job"],
            env={**python_env, **_hourly_fire_env(state)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'wfclock-launcher' AND wait_event_type = 'Lock'"
        )
        with psycopg.connect(database_url, autocommit=True) as watcher:
            wait_until(lambda: watcher.execute(waiting).fetchone()[0], 30, "the fire to wait")
        launcher.send_signal(signal.SIGTERM)
        out, err = launcher.communicate(timeout=30)
    (line,) = [json.loads(x) for x in out.strip().splitlines()]
    assert (launcher.returncode, line["outcome"]) == (75, "error"), err
    assert "SIGTERM" in line["reason"]
    code, line, _ = run_launcher(python_env, **_hourly_fire_env(state))
    assert (code, line["outcome"]) == (0, "launched") and len(list_runs(engine)) == 1


def test_a_one_time_job_records_its_fire_under_its_own_name(python_env, engine, add_schedule):
    from wfclock.core.builders import Schedule, build_one_time_job
    from wfclock.core.model import Rules, validate_spec
    from wfclock.db.store import latest_fire_for_job
    from wfclock.settings import Settings

    run_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    state = add_schedule(one_time_state(run_at))
    spec = validate_spec(
        {
            "tenant": "acme",
            "workflowId": str(state.workflow_id),
            "workflowVersion": 3,
            "trigger": {"type": "schedule", "runAt": run_at.isoformat()},
        },
        Rules(now=run_at - timedelta(hours=1)),
    )
    job = build_one_time_job(
        Schedule("once", "acme", str(state.schedule_id), spec), Settings(database_url="x")
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    code, line, _ = run_launcher(python_env, **env)
    assert (code, line["outcome"]) == (0, "launched")
    # What the operator reads when the Job finishes: no false FireFailed.
    fire = latest_fire_for_job(engine, job["metadata"]["name"])
    assert fire is not None and fire["outcome"] == "launched"


def test_a_jittered_fire_waits_its_offset_then_keeps_its_nominal_key_and_scheduled_for(
    python_env, engine, add_schedule
):
    """The pod of a fire just due waits the fire's own offset before it claims; the run's
    scheduledFor is the nominal instant and firedAt the instant the run started."""
    from wfclock.core.fires import fire_key_for
    from wfclock.core.jitter import jitter_offset

    state = add_schedule(make_state(cron="* * * * *", timezone="UTC", registered_name="wfs-x"))
    at = datetime.now(UTC).replace(second=0, microsecond=0)
    waits: list[float] = []
    env = {
        **python_env,
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
        "WFCLOCK_CRONJOB_NAME": "wfs-x",
        "WFCLOCK_JITTER_SECONDS": "3600",
    }
    assert launcher_main(env, sleep=waits.append) == 0
    offset = jitter_offset(fire_key_for(state.schedule_id, at), 3600).total_seconds()
    (waited,) = waits
    assert 0 <= waited <= offset and offset - waited < 70  # the time since `at` is not waited again
    (run,) = list_runs(engine)
    assert run["trigger_fire_key"] == fire_key_for(state.schedule_id, at)
    assert run["payload"]["scheduledFor"] == f"{at:%Y-%m-%dT%H:%M:%SZ}"
    assert run["payload"]["firedAt"] >= run["payload"]["scheduledFor"]
    bad = {**env, "WFCLOCK_JITTER_SECONDS": "five minutes"}
    assert launcher_main(bad, sleep=waits.append) == 2 and len(waits) == 1
