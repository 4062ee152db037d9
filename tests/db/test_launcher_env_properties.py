"""Random launcher environments (Hypothesis): whatever WFCLOCK_* values a pod is given, the
launcher prints exactly one JSON line, exits 0, 2, 70 or 75, and starts a run only for a real,
due fire of the schedule's current cron, never twice for one fire; each example is checked
against an independent model of what may start a run."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wfclock.db.store import list_runs

from launcher_job.main import main as launcher_main

from ..conftest import make_state

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
CRON, ZONE = "*/5 * * * *", "Asia/Kolkata"


def minutes(at: datetime) -> int:
    return int(at.timestamp()) // 60


instants = st.integers(min_value=-600, max_value=600).map(lambda m: NOW + timedelta(minutes=m))
texts = st.text(max_size=40)
# Fires of CRON (every 5 minutes) from 10 hours before to 10 hours after NOW.
fires = st.integers(min_value=-120, max_value=120).map(
    lambda k: NOW - timedelta(minutes=NOW.minute % 5) + timedelta(minutes=5 * k)
)


@st.composite
def environments(draw, schedule_id: uuid.UUID, url: str) -> dict[str, str]:
    # Half the environments start from a sound fire of the schedule (its Job's name for a fire
    # of its cron, past or to come), which the optional values below may then spoil.
    sound = draw(st.booleans())
    at = draw(fires if sound else instants)
    env = {"WFCLOCK_DATABASE_URL": url if sound else draw(st.sampled_from([url, "mysql://x", ""]))}
    env["WFCLOCK_SCHEDULE_ID"] = (
        str(schedule_id)
        if sound
        else draw(st.sampled_from([str(schedule_id), str(uuid.uuid4())]) | texts)
    )
    job = st.sampled_from([f"nightly-x-{minutes(at)}", f"other-{minutes(at)}"]) | texts
    if sound:
        env["WFCLOCK_JOB_NAME"] = f"nightly-x-{minutes(at)}"
    optional = {
        "WFCLOCK_JOB_NAME": job,
        "WFCLOCK_CRONJOB_NAME": st.sampled_from(["nightly-x", "other"]) | texts,
        "WFCLOCK_CRON": st.sampled_from([CRON, "0 * * * *", "* * * *"]) | texts,
        "WFCLOCK_TIMEZONE": st.sampled_from([ZONE, "UTC", "Mars/Olympus"]) | texts,
        "WFCLOCK_SCHEDULED_FOR": st.sampled_from([at.isoformat(), "yesterday"]) | texts,
    }
    for name, values in optional.items():
        if draw(st.integers(0, 3)) == 0 if sound else draw(st.booleans()):
            env[name] = draw(values)
    env["WFCLOCK_CONNECT_BUDGET_SECONDS"] = "0"
    return env


def real_fire(env: dict[str, str], schedule_id: uuid.UUID, url: str) -> datetime | None:
    """The fire `env` delivers when it is a real fire of the schedule, as its Job would deliver
    it; None when it must start no run."""
    try:
        if uuid.UUID(env.get("WFCLOCK_SCHEDULE_ID", "")) != schedule_id:
            return None
    except ValueError:
        return None
    if env["WFCLOCK_DATABASE_URL"] != url or env.get("WFCLOCK_SCHEDULED_FOR"):
        return None
    prefix, _, minutes = env.get("WFCLOCK_JOB_NAME", "").rpartition("-")
    if not minutes.isdigit() or env.get("WFCLOCK_CRONJOB_NAME", prefix) != prefix:
        return None
    cron, zone = env.get("WFCLOCK_CRON"), env.get("WFCLOCK_TIMEZONE")
    if cron and zone and (cron, zone) != (CRON, ZONE):
        return None
    try:
        at = datetime.fromtimestamp(int(minutes) * 60, UTC)
    except (OverflowError, ValueError, OSError):
        return None
    previous = croniter(CRON, (at - timedelta(seconds=1)).astimezone(ZoneInfo(ZONE)))
    return at if previous.get_next(datetime) == at else None


def test_random_environments_never_start_a_run_they_should_not(
    database_url, engine, add_schedule, capsys
):
    state = add_schedule(
        make_state(cron=CRON, timezone=ZONE, registered_name="nightly-x"),
        effective_from=NOW - timedelta(days=1),
    )

    outcomes: Counter = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(environments(state.schedule_id, database_url))
    def check(env):
        env = {k: v.replace("\x00", "") for k, v in env.items()}
        before = len(list_runs(engine))
        capsys.readouterr()
        code = launcher_main(env)
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1, lines
        outcome = json.loads(lines[0])["outcome"]
        outcomes[outcome] += 1
        assert outcome in {"launched", "duplicate", "skipped", "error"}
        assert code in (0, 2, 70, 75)
        # A run only for the schedule's own, due fire of its current cron and zone, delivered as
        # a CronJob's Job would (a one-time delivery or another registration starts none).
        due = real_fire(env, state.schedule_id, database_url)
        started = len(list_runs(engine)) - before
        assert started == (1 if outcome == "launched" else 0), (env, outcome, started)
        if outcome == "launched":
            assert due is not None and due <= datetime.now(UTC) + timedelta(seconds=60), env
        if due is not None and due <= NOW:
            assert outcome in ("launched", "duplicate"), (env, lines)

    check()
    assert outcomes["launched"] and outcomes["error"], outcomes  # both sides were exercised
    # A real fire, delivered as its Job would: the invariants below are not vacuous.
    due = NOW - timedelta(minutes=NOW.minute % 5 + 5)
    valid = {
        "WFCLOCK_DATABASE_URL": database_url,
        "WFCLOCK_SCHEDULE_ID": str(state.schedule_id),
        "WFCLOCK_JOB_NAME": f"nightly-x-{minutes(due)}",
        "WFCLOCK_CRON": CRON,
        "WFCLOCK_TIMEZONE": ZONE,
    }
    assert launcher_main(valid) == 0
    runs = list_runs(engine)
    fires = [
        datetime.fromisoformat(r["payload"]["scheduledFor"].replace("Z", "+00:00")) for r in runs
    ]
    assert len(fires) == len(set(fires)), "two runs for one fire"
    for fire in fires:
        assert fire <= datetime.now(UTC) + timedelta(seconds=60), f"{fire} was not due"
        start = (fire - timedelta(seconds=1)).astimezone(ZoneInfo(ZONE))
        previous = croniter(CRON, start).get_next(datetime)
        assert previous == fire, f"{fire} is not a fire of {CRON!r}"
