"""Random launcher environments (Hypothesis): whatever WFCLOCK_* values a pod is given, the
launcher prints exactly one JSON line, exits 0, 2, 70 or 75, and starts a run only for a real,
due fire of the schedule's current cron, never twice for one fire."""

from __future__ import annotations

import json
import uuid
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


@st.composite
def environments(draw, schedule_id: uuid.UUID, url: str) -> dict[str, str]:
    env = {"WFCLOCK_DATABASE_URL": draw(st.sampled_from([url, url, "mysql://x", ""]))}
    env["WFCLOCK_SCHEDULE_ID"] = draw(
        st.sampled_from([str(schedule_id), str(schedule_id), str(uuid.uuid4())]) | texts
    )
    at = draw(instants)
    job = st.sampled_from([f"nightly-x-{minutes(at)}", f"other-{minutes(at)}"]) | texts
    optional = {
        "WFCLOCK_JOB_NAME": job,
        "WFCLOCK_CRONJOB_NAME": st.sampled_from(["nightly-x", "other"]) | texts,
        "WFCLOCK_CRON": st.sampled_from([CRON, "0 * * * *", "* * * *"]) | texts,
        "WFCLOCK_TIMEZONE": st.sampled_from([ZONE, "UTC", "Mars/Olympus"]) | texts,
        "WFCLOCK_SCHEDULED_FOR": st.sampled_from([at.isoformat(), "yesterday"]) | texts,
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            env[name] = draw(values)
    env["WFCLOCK_CONNECT_BUDGET_SECONDS"] = "0"
    return env


def test_random_environments_never_start_a_run_they_should_not(
    database_url, engine, add_schedule, capsys
):
    state = add_schedule(
        make_state(cron=CRON, timezone=ZONE, registered_name="nightly-x"),
        effective_from=NOW - timedelta(days=1),
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(environments(state.schedule_id, database_url))
    def check(env):
        capsys.readouterr()
        code = launcher_main({k: v.replace("\x00", "") for k, v in env.items()})
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1, lines
        assert json.loads(lines[0])["outcome"] in {"launched", "duplicate", "skipped", "error"}
        assert code in (0, 2, 70, 75)

    check()
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
