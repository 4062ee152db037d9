"""`wfclock` CLI against a real database."""

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.db.store import list_fires, list_runs
from wfclock.launcher import ClockFire, EventStart, ManualStart, launch

from ..conftest import NOW, make_state, one_time_state


def wfclock(env, *args):
    return subprocess.run(["wfclock", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def three_kinds_of_runs(conn, add_schedule):
    recurring = add_schedule()
    once = add_schedule(one_time_state(NOW - timedelta(minutes=1), name="once"))
    launch(
        conn, ClockFire(recurring.schedule_id, datetime(2026, 11, 25, 11, tzinfo=UTC), "j"), now=NOW
    )
    launch(conn, ClockFire(once.schedule_id, NOW - timedelta(minutes=1), "j"), now=NOW)
    launch(conn, EventStart("acme", recurring.workflow_id, 3, "ticket.created", "e1", {}), now=NOW)
    launch(conn, ManualStart("globex", uuid.uuid4(), 1), now=NOW)
    return recurring


def test_runs_list_labels_each_trigger_type(python_env, three_kinds_of_runs):
    out = wfclock(python_env, "runs", "list")
    assert out.returncode == 0, out.stderr
    for label in ("One-time schedule", "Recurring schedule", "Event: ticket.created", "Manual"):
        assert label in out.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--trigger-type", "recurring"], {"recurring"}),
        (["--trigger-type", "schedule"], {"schedule"}),
        (["--trigger-type", "event"], {"event"}),
        (["--trigger-type", "manual"], {"manual"}),
        (["--tenant", "globex"], {"manual"}),
        (
            ["--tenant", "acme", "--workflow", "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"],
            {"recurring", "schedule", "event"},
        ),
    ],
)
def test_runs_list_filters_by_real_trigger_type_tenant_and_workflow(
    python_env, three_kinds_of_runs, args, expected
):
    out = wfclock(python_env, "runs", "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    assert {r["trigger_type"] for r in json.loads(out.stdout)} == expected


def test_manual_start_from_the_cli_lists_as_manual_and_a_retry_is_one_run(python_env, engine):
    workflow = str(uuid.uuid4())
    args = ["start", "manual", "--tenant", "acme", "--workflow", workflow, "--version", "1"]
    out = wfclock(python_env, *args, "--request-id", "req-1")
    assert out.returncode == 0 and json.loads(out.stdout)["outcome"] == "launched"
    retried = wfclock(python_env, *args, "--request-id", "req-1")  # after an uncertain result
    assert json.loads(retried.stdout)["outcome"] == "duplicate"
    assert len([r for r in list_runs(engine) if str(r["workflow_id"]) == workflow]) == 1
    listed = wfclock(python_env, "runs", "list", "--workflow", workflow)
    assert "Manual" in listed.stdout
    missing = wfclock(python_env, *args)
    assert missing.returncode == 2 and "--request-id" in missing.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--database-url", "mysql://x/y", "runs", "list"], "must start with postgresql://"),
        (["--database-url", "postgresql://h:notaport/db", "runs", "list"], "not usable"),
        (["runs", "list", "--workflow", "nope"], "is not a UUID"),
        (["runs", "list", "--trigger-type", "cron"], "invalid choice"),
        (
            [
                "backfill",
                str(uuid.uuid4()),
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-01-02T00:00:00Z",
            ],
            "no schedule with id",
        ),
        (
            ["backfill", str(uuid.uuid4()), "--from", "yesterday", "--to", "2026-01-02T00:00:00Z"],
            "not an RFC 3339",
        ),
        (
            [
                "start",
                "manual",
                "--tenant",
                "a",
                "--workflow",
                str(uuid.uuid4()),
                "--version",
                "1",
                "--payload",
                "[1",
            ],
            "not JSON",
        ),
    ],
)
def test_garbage_input_exits_2_with_a_clear_message_and_writes_nothing(
    python_env, engine, args, message
):
    out = wfclock(python_env, *args)
    assert out.returncode == 2, out
    assert message in out.stderr
    assert list_runs(engine) == []


def test_schedules_shows_state_rows(python_env, add_schedule):
    add_schedule(make_state(name="hourly"))
    out = wfclock(python_env, "schedules")
    assert (
        out.returncode == 0 and "acme/hourly" in out.stdout and "CronJob/wfs-nightly" in out.stdout
    )


# --- the fire ledger: downgrade and prune ----------------------------------------------------

LOUD_FLAG = "--i-understand-this-deletes-the-fire-ledger"


def test_db_downgrade_without_a_revision_is_refused_and_keeps_the_ledger(
    python_env, engine, three_kinds_of_runs
):
    before = list_fires(engine)
    out = wfclock(python_env, "db", "downgrade")
    assert out.returncode == 2, out
    assert "fire ledger" in out.stderr and LOUD_FLAG in out.stderr
    assert list_fires(engine) == before and len(before) == 2


@pytest.mark.parametrize("target", ["base", "0001"])
def test_db_downgrade_below_the_ledger_needs_the_loud_flag(
    python_env, engine, three_kinds_of_runs, target
):
    refused = wfclock(python_env, "db", "downgrade", target)
    assert refused.returncode == 2 and LOUD_FLAG in refused.stderr
    assert "claim" in refused.stderr  # says why: old fire keys could be claimed again
    assert len(list_fires(engine)) == 2
    engine.dispose()
    done = wfclock(python_env, "db", "downgrade", target, LOUD_FLAG)
    assert done.returncode == 0, done.stderr
    assert wfclock(python_env, "db", "upgrade").returncode == 0


def test_db_prune_removes_old_fires_and_says_what_it_kept(python_env, conn, engine, add_schedule):
    state = add_schedule(
        make_state(cron="0 * * * *", timezone="UTC"), effective_from=NOW - timedelta(days=400)
    )
    for days in (300, 200, 1):
        at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
        launch(conn, ClockFire(state.schedule_id, at, "j"), now=datetime.now(UTC))
    conn.execute("UPDATE workflow_schedule_fires SET last_delivered_at = scheduled_for")
    conn.commit()
    dry = wfclock(python_env, "db", "prune", "--retention-days", "90", "--dry-run")
    assert dry.returncode == 0 and "2 ledger row(s) would be pruned" in dry.stdout, dry
    assert len(list_fires(engine)) == 3
    done = wfclock(python_env, "db", "prune", "--retention-days", "90")
    assert done.returncode == 0 and "pruned 2 ledger row(s)" in done.stdout, done
    assert len(list_fires(engine)) == 1
    too_short = wfclock(python_env, "db", "prune", "--retention-days", "3")
    assert too_short.returncode == 2 and "at least 14" in too_short.stderr


def test_backfill_before_the_pruned_horizon_is_refused(python_env, engine, add_schedule):
    state = add_schedule(
        make_state(cron="0 * * * *", timezone="UTC"), effective_from=NOW - timedelta(days=400)
    )
    assert wfclock(python_env, "db", "prune", "--retention-days", "90").returncode == 0
    start = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%dT%H:00:00Z")
    end = (datetime.now(UTC) - timedelta(days=99)).strftime("%Y-%m-%dT%H:00:00Z")
    out = wfclock(python_env, "backfill", str(state.schedule_id), "--from", start, "--to", end)
    assert out.returncode == 2 and "pruned" in out.stderr, out
    assert list_runs(engine) == []
