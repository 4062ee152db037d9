"""`wfclock backfill`: every fire in a window, launched once, however often it is run."""

import subprocess
from datetime import UTC, datetime, timedelta

from wfclock.db.store import list_fires, list_runs

from ..conftest import make_state


def wfclock(env, *args):
    return subprocess.run(["wfclock", *args], env=env, capture_output=True, text=True, timeout=120)


def test_backfill_launches_each_fire_in_the_window_once_and_dry_run_writes_nothing(
    python_env, engine, add_schedule
):
    state = add_schedule(
        make_state(cron="0 */6 * * *", timezone="America/New_York"),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    window = ["--from", "2026-03-07T00:00:00-05:00", "--to", "2026-03-09T00:00:00-04:00"]
    dry = wfclock(python_env, "backfill", str(state.schedule_id), *window, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    # 00, 06, 12, 18 on 7 March (EST); on 8 March 02:00 does not exist, so 00 (EST), 06, 12, 18 (EDT).
    assert dry.stdout.count("would launch") == 8 and "2026-03-08T10:00:00Z" in dry.stdout
    assert list_fires(engine) == []
    first = wfclock(python_env, "backfill", str(state.schedule_id), *window)
    assert first.returncode == 0 and first.stdout.count("launched") == 8
    again = wfclock(python_env, "backfill", str(state.schedule_id), *window)
    assert again.stdout.count("duplicate") == 8 and "  launched" not in again.stdout
    runs = list_runs(engine)
    assert len(runs) == 8 and len({r["payload"]["scheduledFor"] for r in runs}) == 8
    assert {r["trigger_metadata"]["source"] for r in runs} == {"backfill"}


def test_backfill_never_launches_a_fire_before_its_time(python_env, engine, add_schedule):
    state = add_schedule(
        make_state(cron="0 * * * *", timezone="UTC"),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    now = datetime.now(UTC)
    out = wfclock(
        python_env,
        "backfill",
        str(state.schedule_id),
        "--from",
        (now - timedelta(hours=2)).isoformat(),
        "--to",
        (now + timedelta(hours=5)).isoformat(),
    )
    assert out.returncode == 0
    assert all(
        datetime.fromisoformat(r["payload"]["scheduledFor"].replace("Z", "+00:00")) <= now
        for r in list_runs(engine)
    )
    assert len(list_runs(engine)) == 2


def test_backfill_dry_run_says_which_fires_the_dst_policy_drops(python_env, engine, add_schedule):
    """New York, 2026-11-01: 01:30 happens twice; under Auto a fixed-time schedule runs at the
    first only. The dry run says so, as the launch then does."""
    state = add_schedule(
        make_state(cron="30 1 * * *", timezone="America/New_York", dst_policy="Auto"),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    window = ["--from", "2026-11-01T00:00:00-04:00", "--to", "2026-11-01T12:00:00-05:00"]
    dry = wfclock(python_env, "backfill", str(state.schedule_id), *window, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would launch") == 1 and dry.stdout.count("would skip") == 1
    assert "happens twice" in dry.stdout
    real = wfclock(python_env, "backfill", str(state.schedule_id), *window)
    assert real.stdout.count("launched") == 1 and real.stdout.count("skipped") == 1
    assert len(list_runs(engine)) == 1
