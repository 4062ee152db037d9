"""Run control end to end: the run-now annotation (once per id, refused while paused), the pause
reason in `kubectl get wfs -o wide`, the status and the Events, and recent fires in the status
with the overlap policy deciding a fire."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

from wfclock.db.store import engine_for, list_runs
from wfclock_devstack.processes import wait_until

from .conftest import backdate

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
RUN_NOW = "wfclock.dev/run-now"


def events(cluster, name: str) -> list[tuple[str, str]]:
    found = cluster.core.list_namespaced_event(cluster.namespace).items
    return [(e.reason, e.message) for e in found if e.involved_object.name == name]


def manual_runs(database_url) -> list[dict]:
    return list_runs(engine_for(database_url), trigger_type="manual")


def run_now(python_env, control_plane, cluster, name, request_id):
    """`wfclock run-now` sets the annotation and waits for the operator's answer."""
    env = {**python_env, "KUBECONFIG": str(control_plane.kubeconfig)}
    done = subprocess.run(
        ["wfclock", "run-now", name, "-n", cluster.namespace, "--id", request_id, "--wait", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_run_now_starts_one_run_per_request_id_and_a_reapplied_id_starts_nothing_more(
    start_operator, cluster, database_url, python_env, control_plane
):
    start_operator()
    cluster.apply("nightly", HOURLY)
    cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    code, answer = run_now(python_env, control_plane, cluster, "nightly", "deploy-42")
    assert code == 0 and answer["outcome"] == "launched", answer
    assert answer["requestedBy"].startswith("wfclock-cli-")
    (run,) = manual_runs(database_url)
    assert str(run["run_id"]) == answer["runId"]
    assert run["trigger_metadata"]["requestId"] == "deploy-42"
    # The same manifest applied again (the annotation unchanged, another field touched), then a
    # new id: by the time the new id is answered, the re-apply was handled, and started nothing.
    cluster.patch("nightly", {"metadata": {"annotations": {RUN_NOW: "deploy-42", "touch": "1"}}})
    cluster.patch("nightly", {"metadata": {"annotations": {RUN_NOW: "deploy-43"}}})
    status = cluster.wait_status(
        "nightly", lambda s: (s.get("runNow") or {}).get("requestId") == "deploy-43"
    )
    assert status["runNow"]["outcome"] == "launched"
    assert sorted(r["trigger_metadata"]["requestId"] for r in manual_runs(database_url)) == [
        "deploy-42",
        "deploy-43",
    ]
    assert [reason for reason, _ in events(cluster, "nightly")].count("RunNow") == 2
    kinds = [f["kind"] for f in cluster.status("nightly")["recentFires"]]
    assert kinds.count("manual") == 2


def test_a_paused_schedule_shows_its_reason_and_refuses_run_now_with_an_event(
    start_operator, cluster, database_url, control_plane
):
    start_operator()
    cluster.apply("nightly", HOURLY, paused=True, pauseReason="quarter-end freeze")
    status = cluster.wait_status("nightly", lambda s: s.get("phase") == "Paused")
    assert status["pauseReason"] == "quarter-end freeze"
    wide = control_plane.kubectl("get", "wfs", "-n", cluster.namespace, "-o", "wide")
    header, row = wide.splitlines()[:2]
    assert "PAUSE REASON" in header and "OVERLAP" in header and "LAST SUCCESS" in header
    assert row.rstrip().endswith("quarter-end freeze") or "quarter-end freeze" in row
    registered = f"registered CronJob {status['registered']['name']}, paused: quarter-end freeze"
    assert ("Registered", registered) in events(cluster, "nightly")
    cluster.patch("nightly", {"metadata": {"annotations": {RUN_NOW: "r1"}}})
    status = cluster.wait_status("nightly", lambda s: (s.get("runNow") or {}).get("outcome"))
    assert status["runNow"]["outcome"] == "refused"
    assert status["runNow"]["reason"] == "paused: quarter-end freeze"
    refusals = [m for r, m in events(cluster, "nightly") if r == "RunNowRefused"]
    assert refusals == ["run-now 'r1' refused: paused: quarter-end freeze"]
    # A run-now request alone registers nothing again: no CronJob write, no Rescheduled Event.
    assert "Rescheduled" not in [r for r, _ in events(cluster, "nightly")]
    # Resumed with the annotation still there: the id was spent by the refusal.
    cluster.apply("nightly", HOURLY)
    cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    wait_until(
        lambda: any(r == "Resumed" for r, _ in events(cluster, "nightly")), 20, "Resumed Event"
    )
    resumed = next(m for r, m in events(cluster, "nightly") if r == "Resumed")
    assert resumed.endswith("(it was paused: quarter-end freeze)")
    assert manual_runs(database_url) == []


def test_recent_fires_show_a_launched_fire_and_the_one_its_running_run_skipped(
    start_operator, cluster, database_url
):
    start_operator(WFCLOCK_ACCOUNTING_INTERVAL_SECONDS="3600")  # the Jobs deliver, not the sweep
    created = cluster.apply("nightly", HOURLY, overlapPolicy="Skip")
    cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    backdate(database_url, created["metadata"]["uid"])
    (cronjob,) = cluster.cronjobs()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    earlier, later = hour - timedelta(hours=1), hour
    first = cluster.job_from_cronjob(cronjob, earlier)
    cluster.wait_job_finished(first.metadata.name)
    second = cluster.job_from_cronjob(cronjob, later)  # the first run is still queued
    cluster.wait_job_finished(second.metadata.name)

    def both_shown(status):
        shown = {f["scheduledFor"]: f for f in status.get("recentFires") or []}
        return f"{later:%Y-%m-%dT%H:%M:%SZ}" in shown and f"{earlier:%Y-%m-%dT%H:%M:%SZ}" in shown

    status = cluster.wait_status("nightly", both_shown)
    shown = {f["scheduledFor"]: f for f in status["recentFires"]}
    launched, skipped = shown[f"{earlier:%Y-%m-%dT%H:%M:%SZ}"], shown[f"{later:%Y-%m-%dT%H:%M:%SZ}"]
    assert launched["outcome"] == "launched" and launched["runStatus"] == "queued"
    assert skipped["outcome"] == "skipped"
    assert skipped["reason"] == f"overlap: run {launched['runId']} is still queued"
    assert status["lastSuccessfulFireAt"] == f"{earlier:%Y-%m-%dT%H:%M:%SZ}"
    assert status["lastSkippedFire"]["reason"].startswith("overlap:")
    assert status["overlapPolicy"] == "Skip"
    wait_until(
        lambda: any(r == "FireSkipped" and "overlap" in m for r, m in events(cluster, "nightly")),
        20,
        "the FireSkipped Event with reason overlap",
    )
