"""Time policies end to end: a real Job of the CronJob for a fire the daylight-saving policy drops
is refused by the launcher pod (recorded skipped, no run), the fire after a gap is launched by
the operator through the launcher, once, and `L` is registered as a wider CronJob. No real DST
change can be waited for: the Jobs are the ones the CronJob controller made on New York's
fall-back day (2026-11-01), created as it names them, and the operator's own clock
(`Context.clock`) is set just before Berlin's spring-forward gap (2026-03-29)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from wfclock.controller import handlers
from wfclock.controller.context import Context
from wfclock.core.fires import fire_key_for
from wfclock.db.store import engine_for, get_schedule, list_fires, list_runs
from wfclock_devstack.processes import wait_until

# 01:30 happens twice in New York on 2026-11-01: 05:30Z (EDT) and 06:30Z (EST).
FIRST, SECOND = datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
NEW_YORK_0130 = {"type": "recurring", "cron": "30 1 * * *", "timezone": "America/New_York"}


def published_long_ago(database_url: str, uid: str) -> None:
    """Makes the fall-back day's fires the current trigger's, without making the accounting
    sweep owe (and record) every fire since then: only the trigger's start moves back."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE workflow_schedules SET trigger_effective_from = '2026-10-01T00:00:00Z' "
            "WHERE schedule_id = %s",
            (uid,),
        )


def test_the_second_0130_of_fall_back_day_is_refused_by_the_launcher_pod_under_auto(
    start_operator, cluster, database_url
):
    start_operator()
    created = cluster.apply("nightly", NEW_YORK_0130)
    status = cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    uid = created["metadata"]["uid"]
    published_long_ago(database_url, uid)
    (cronjob,) = cluster.cronjobs()
    (container,) = cronjob.spec.job_template.spec.template.spec.containers
    assert {e.name: e.value for e in container.env}["WFCLOCK_DST_POLICY"] == "Auto"
    first = cluster.job_from_cronjob(cronjob, FIRST)
    second = cluster.job_from_cronjob(cronjob, SECOND)
    for job in (first, second):
        cluster.wait_job_finished(job.metadata.name)
    engine = engine_for(database_url)
    fires = {f["fire_key"]: f for f in list_fires(engine)}
    launched, refused = fires[fire_key_for(uid, FIRST)], fires[fire_key_for(uid, SECOND)]
    assert launched["outcome"] == "launched"
    assert (refused["outcome"], refused["run_id"]) == ("skipped", None)
    assert refused["reason"].startswith("dst-policy:Auto: 2026-11-01 01:30 happens twice")
    assert [r["trigger_fire_key"] for r in list_runs(engine)] == [fire_key_for(uid, FIRST)]
    # The refused pod exits 0 (the fire is decided), its JSON line says why.
    assert "dst-policy:Auto" in cluster.run_pod_again(second.metadata.name)
    assert status["nextFires"], status


def test_last_day_of_month_is_registered_as_28_to_31_and_shown_as_written(start_operator, cluster):
    start_operator()
    cluster.apply("month-end", {"type": "recurring", "cron": "0 18 l * *", "timezone": "UTC"})
    status = cluster.wait_status("month-end", lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    assert cronjob.spec.schedule == "0 18 28-31 * *"
    days = [datetime.fromisoformat(f["at"].replace("Z", "+00:00")) for f in status["nextFires"]]
    assert days and all((d + timedelta(days=1)).day == 1 for d in days), days


# Berlin, 2026-03-29: 02:00-03:00 does not exist. `30 2 29 3 *` (that day only, so the real
# clock never fires it while a test runs) is a fixed-time job: under Auto it runs at 03:00, the
# first instant after the gap (01:00Z), a fire the CronJob controller never creates.
GAP_END = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
BERLIN_0230_ON_GAP_DAY = {"type": "recurring", "cron": "30 2 29 3 *", "timezone": "Europe/Berlin"}
# The operator's clock stands still here until the schedule is registered, then runs.
JUST_BEFORE = GAP_END - timedelta(seconds=3)


class OperatorClock:
    """The in-process operator's clock: stopped at an instant of the test's choosing, then
    running at real speed from there."""

    def __init__(self, at: datetime):
        self.stopped_at: datetime | None = at
        self.offset = timedelta(0)

    def run(self) -> None:
        self.offset = self.stopped_at - datetime.now(UTC)
        self.stopped_at = None

    def __call__(self) -> datetime:
        stopped = self.stopped_at
        return stopped if stopped is not None else datetime.now(UTC) + self.offset


@pytest.fixture
def operator_clock(monkeypatch):
    """Every Context the operator makes at its start runs on this clock (its reconciles, the
    shifted fires' queue, the accounting sweep); Kubernetes, Postgres and the pods keep theirs."""
    clock = OperatorClock(JUST_BEFORE)
    monkeypatch.setattr(handlers, "Context", functools.partial(Context, clock=clock))
    return clock


def test_a_fixed_time_in_a_spring_forward_gap_runs_once_after_it_under_auto(
    operator_clock, start_operator, cluster, database_url
):
    # Ledger rows of March are older than the default retention by the real clock: kept.
    start_operator(WFCLOCK_LEDGER_RETENTION_DAYS="0", WFCLOCK_ACCOUNTING_INTERVAL_SECONDS="1")
    created = cluster.apply("spring", BERLIN_0230_ON_GAP_DAY, startingDeadlineSeconds=20)
    uid = created["metadata"]["uid"]
    status = cluster.wait_status("spring", lambda s: s.get("phase") == "Scheduled")
    operator_clock.run()  # registered (published at JUST_BEFORE), the shifted fire queued
    shown = status["nextFires"][0]
    assert shown["at"] == "2026-03-29T01:00:00Z" and "does not exist" in shown["note"], shown
    # The CronJob keeps the raw cron (robfig/cron skips the gap) and hands its launcher pods the
    # policy, by which they refuse what it drops.
    (cronjob,) = cluster.cronjobs()
    assert (cronjob.spec.schedule, cronjob.spec.time_zone) == ("30 2 29 3 *", "Europe/Berlin")
    (container,) = cronjob.spec.job_template.spec.template.spec.containers
    assert {e.name: e.value for e in container.env}["WFCLOCK_DST_POLICY"] == "Auto"

    engine = engine_for(database_url)
    key = fire_key_for(uid, GAP_END)
    fire = wait_until(
        lambda: {f["fire_key"]: f for f in list_fires(engine)}.get(key),
        30,
        "the shifted fire in the ledger",
        interval=0.3,
    )
    assert (fire["outcome"], fire["source"]) == ("launched", "dst-shift"), fire
    (run,) = list_runs(engine)
    assert run["trigger_fire_key"] == key and run["payload"]["scheduledFor"] == utc(GAP_END)
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    assert [e.message for e in events if e.reason == "ShiftedFire"] == [
        "launched the fire after the daylight-saving gap at 2026-03-29T01:00:00Z "
        "(dstPolicy Auto): launched"
    ]

    # The accounting sweep passes over the fire (owed once: it is recorded) ...
    wait_until(
        lambda: get_schedule(engine, uid)["accounted_until"] >= GAP_END,
        60,
        "the accounting sweep past the shifted fire",
        interval=0.5,
    )
    # ... and a Job of the CronJob delivering the same instant (the controller makes none; a
    # hand-made one, or a cron that also fires at 03:00) meets its record: one run.
    job = cluster.job_from_cronjob(cronjob, GAP_END)
    cluster.wait_job_finished(job.metadata.name)
    fires = [f for f in list_fires(engine) if f["fire_key"] == key]
    assert [(f["outcome"], f["attempts"]) for f in fires] == [("launched", 2)]
    assert [r["trigger_fire_key"] for r in list_runs(engine)] == [key]


def utc(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
