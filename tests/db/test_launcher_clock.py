"""The launcher's own clock ahead of or behind the database's (libfaketime, Debian's package,
installed by scripts/ensure-faketime.sh): the database's clock decides whether a fire is due and
what the run says about when it fired, so a skewed pod neither refuses a due fire nor claims one
early."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from wfclock.db.store import list_fires, list_runs

from ..conftest import make_state

ROOT = Path(__file__).resolve().parents[2]


def faketime_library() -> str:
    done = subprocess.run(
        [ROOT / "scripts" / "ensure-faketime.sh"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def faketime() -> str:
    return faketime_library()


def skewed(env: dict[str, str], library: str, offset: str) -> dict[str, str]:
    """The environment of a launcher whose wall clock is `offset` (e.g. -90s) off."""
    return {
        **env,
        "LD_PRELOAD": library,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def run_launcher(env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "launcher_job"], env=env, capture_output=True, text=True, timeout=60
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"one JSON line expected: {done.stdout!r} / {done.stderr!r}"
    return done.returncode, json.loads(lines[0])


def database_now(url: str) -> datetime:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def test_faketime_really_moves_the_launchers_clock(python_env, faketime):
    code = "import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=skewed(python_env, faketime, "-90s"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    behind = datetime.now(UTC) - datetime.fromisoformat(out.strip())
    assert timedelta(seconds=80) < behind < timedelta(seconds=100), behind


@pytest.mark.parametrize("offset", ["-90s", "+90s"])
def test_a_due_fire_launches_once_whatever_the_launchers_clock_says(
    python_env, engine, add_schedule, database_url, faketime, offset
):
    state = add_schedule(make_state(cron="* * * * *", timezone="UTC", registered_name="wfs-x"))
    now = database_now(database_url)
    # The fire of the minute that just began: its Job starts now, by the controller's clock.
    at = now.replace(second=0, microsecond=0)
    env = skewed(
        {
            **python_env,
            "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
            "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
            "WFCLOCK_CRONJOB_NAME": "wfs-x",
            "WFCLOCK_CRON": "* * * * *",
            "WFCLOCK_TIMEZONE": "UTC",
        },
        faketime,
        offset,
    )
    code, line = run_launcher(env)
    assert (code, line["outcome"]) == (0, "launched"), line
    code, again = run_launcher(env)
    assert (code, again["outcome"], again["runId"]) == (0, "duplicate", line["runId"]), again
    (run,) = list_runs(engine)
    fired = datetime.fromisoformat(run["payload"]["firedAt"].replace("Z", "+00:00"))
    after = database_now(database_url)
    # firedAt is the database's time of the fire, not the pod's.
    assert at <= fired <= after, (at, fired, after)
    (fire,) = list_fires(engine)
    assert fire["outcome"] == "launched"
    next_fire = list_state_next_fire(database_url, state.schedule_id)
    assert next_fire == at + timedelta(minutes=1), next_fire


def test_a_launcher_ahead_of_the_database_starts_no_fire_early(
    python_env, engine, add_schedule, database_url, faketime
):
    state = add_schedule(make_state(cron="* * * * *", timezone="UTC", registered_name="wfs-x"))
    now = database_now(database_url)
    # Two minutes ahead by the database's clock: the pod, 150 s ahead, thinks it is due.
    at = now.replace(second=0, microsecond=0) + timedelta(minutes=2)
    env = skewed(
        {
            **python_env,
            "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
            "WFCLOCK_JOB_NAME": f"wfs-x-{int(at.timestamp()) // 60}",
            "WFCLOCK_CRONJOB_NAME": "wfs-x",
            "WFCLOCK_CRON": "* * * * *",
            "WFCLOCK_TIMEZONE": "UTC",
        },
        faketime,
        "+150s",
    )
    code, line = run_launcher(env)
    assert code == 2 and line["outcome"] == "error" and "not due yet" in line["reason"], line
    assert list_runs(engine) == [] and list_fires(engine) == []


def list_state_next_fire(url: str, schedule_id) -> datetime:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT next_fire_at FROM workflow_schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()[0]
