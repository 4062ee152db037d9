"""`wfclock` CLI against a real database."""

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.db.store import list_runs
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
