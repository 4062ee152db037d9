"""Many schedules on one machine: COUNT recurring schedules registered by the operator (16
threads), all firing in the same minute, and COUNT bare CronJobs firing in that minute too, on
one control plane (no node: the Jobs' pods stay pending). Prints the registration throughput,
the operator's resident memory (now and its peak), the CronJob controller's Job-creation lag at
that minute for each kind (the Job's creationTimestamp after the minute; whole seconds), the
objects and bytes the API server stores, and the state table's and the ledger's sizes after a
simulated day (a day of fires inserted directly: a third of the schedules every 15 minutes, a
third hourly, a third daily, one run per launched fire).
Usage: python bench/large_scale.py [COUNT=2000]
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _cluster import BURST_DEADLINE, NAMESPACE, operator, rss_mib, schedule, stack, wait_for
from kubernetes import client
from operator_apply import create_all, registered
from wfclock.db.store import engine_for

GROUP = ("wfclock.dev", "v1alpha1")
BARE = "bare"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def job_lags(api, namespace: str, minute: datetime) -> list[float]:
    batch, token, lags = client.BatchV1Api(api), None, []
    while True:
        more = {"_continue": token} if token else {}
        response = batch.list_namespaced_job(namespace, limit=500, _preload_content=False, **more)
        body = json.loads(response.data)
        for item in body["items"]:
            created = datetime.fromisoformat(item["metadata"]["creationTimestamp"])
            lags.append((created - minute).total_seconds())
        token = body["metadata"].get("continue")
        if not token:
            return lags


def storage(api) -> tuple[dict, float]:
    """The API server's stored objects by resource, and the storage's size in bytes."""
    text = api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False)[
        0
    ].data.decode()
    objects, size = {}, 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_storage_objects{"):
            resource = re.search(r'resource="([^"]*)"', line).group(1)
            objects[resource] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("apiserver_storage_size_bytes{"):
            size = max(size, float(line.rsplit(" ", 1)[1]))
    return objects, size


def simulate_day(url: str) -> dict[str, int]:
    """A day of fires and runs for every schedule, inserted directly; the tables' sizes after."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            WITH fires AS (
              SELECT s.schedule_id, s.tenant, s.workflow_id, s.name,
                     now() - make_interval(mins => k * every) AS at, gen_random_uuid() AS run_id
              FROM (SELECT *, (ARRAY[15, 60, 1440])[1 + row_number() OVER () % 3] AS every
                    FROM workflow_schedules) s,
                   LATERAL generate_series(1, 1440 / s.every) k
            ), runs AS (
              INSERT INTO workflow_runs (run_id, tenant, workflow_id, workflow_version, status,
                  payload, trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
              SELECT run_id, tenant, workflow_id, 1, 'succeeded',
                     jsonb_build_object('scheduleId', schedule_id, 'scheduledFor', at),
                     'schedule',
                     jsonb_build_object('source', name || '-' || extract(epoch FROM at)::bigint),
                     'workflow-schedule-fire:' || schedule_id || ':' || at, schedule_id
              FROM fires
            )
            INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome,
                run_id, source, first_delivered_at, last_delivered_at)
            SELECT 'workflow-schedule-fire:' || schedule_id || ':' || at, schedule_id, at,
                   'launched', run_id, name || '-' || extract(epoch FROM at)::bigint,
                   at + interval '2 seconds', at + interval '2 seconds'
            FROM fires
            """
        )
        conn.execute("VACUUM ANALYZE")
        sizes = {}
        for table in ("workflow_schedules", "workflow_schedule_fires", "workflow_runs"):
            rows, size = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"  # noqa: S608
            ).fetchone()
            sizes[table] = (rows, size)
        return sizes


def describe(lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return f"n={len(ordered)} p50 {statistics.median(ordered):5.0f} s  p99 {p99:5.0f} s  max {ordered[-1]:5.0f} s"


def main(count: int) -> None:
    load_before = os.getloadavg()
    # The minute they all fire: after the registration (about 25/s on this loaded machine).
    minute = (datetime.now(UTC) + timedelta(seconds=90 + count / 15)).replace(
        second=0, microsecond=0
    ) + timedelta(minutes=1)
    cron = f"{minute.minute} {minute.hour} * * *"
    trigger = {"type": "recurring", "cron": cron, "timezone": "UTC"}
    with stack() as (plane, api, url):
        objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        batch = client.BatchV1Api(api)
        core.create_namespace({"metadata": {"name": BARE}})
        engine = engine_for(url)
        template = {
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "x", "image": "x", "command": ["true"]}],
                    }
                }
            }
        }
        log = Path(tempfile.mkdtemp()) / "operator.log"
        with operator(plane, url, log) as proc:
            time.sleep(3)
            idle = rss_mib(proc.pid)
            start = time.perf_counter()
            create_all(
                lambda i: objects.create_namespaced_custom_object(
                    *GROUP,
                    NAMESPACE,
                    "workflowschedules",
                    schedule(f"s-{i}", trigger, **BURST_DEADLINE),
                ),
                count,
            )
            wait_for(lambda: registered(engine) >= count, 7200, interval=1)
            took = time.perf_counter() - start
            loaded, registration_peak = rss_mib(proc.pid), peak_rss_mib(proc.pid)
            bare_start = time.perf_counter()
            create_all(
                lambda i: batch.create_namespaced_cron_job(
                    BARE,
                    {
                        "metadata": {"name": f"bare-{i}"},
                        "spec": {"schedule": cron, "timeZone": "UTC", "jobTemplate": template},
                    },
                ),
                count,
            )
            bare_took = time.perf_counter() - bare_start
            if datetime.now(UTC) > minute - timedelta(seconds=5):
                raise SystemExit(f"registering took too long for the minute {minute:%H:%M}")
            stored, size = storage(api)
            ws = objects.list_namespaced_custom_object(
                *GROUP, NAMESPACE, "workflowschedules", limit=1
            )["items"][0]
            cj = batch.list_namespaced_cron_job(NAMESPACE, limit=1).items[0]
            ws_bytes = len(json.dumps(ws))
            cj_bytes = len(json.dumps(api.sanitize_for_serialization(cj)))
            time.sleep(max(0.0, (minute - datetime.now(UTC)).total_seconds()))
            wait_for(
                lambda: (
                    len(job_lags(api, NAMESPACE, minute)) >= count
                    and len(job_lags(api, BARE, minute)) >= count
                ),
                1800,
                interval=5,
            )
            wfclock_lags, bare_lags = job_lags(api, NAMESPACE, minute), job_lags(api, BARE, minute)
            after_fire, peak = rss_mib(proc.pid), peak_rss_mib(proc.pid)
        sizes = simulate_day(url)
    print(
        f"schedules: {count}; load average before {load_before[0]:.1f}, "
        f"after {os.getloadavg()[0]:.1f}"
    )
    print(
        f"registration: {count} in {took:.0f} s ({count / took:.0f}/s); bare CronJob creates "
        f"{count / bare_took:.0f}/s"
    )
    print(
        f"operator RSS: idle {idle:.0f} MiB, {count} registered {loaded:.0f} MiB (peak so far "
        f"{registration_peak:.0f} MiB), after the minute {after_fire:.0f} MiB, peak {peak:.0f} "
        "MiB (goal <= 300)"
    )
    print(f"Job-creation lag at {minute:%H:%M} UTC, CronJob controller:")
    print(f"  bare CronJobs:    {describe(bare_lags)}")
    print(f"  wfclock CronJobs: {describe(wfclock_lags)}")
    print(
        "API server storage before the minute: "
        + ", ".join(
            f"{k} {v:.0f}"
            for k, v in sorted(stored.items())
            if k in ("workflowschedules.wfclock.dev", "cronjobs.batch", "events", "jobs.batch")
        )
        + f"; storage size {size / 2**20:.0f} MiB"
    )
    print(f"object sizes (JSON): WorkflowSchedule {ws_bytes} B, its CronJob {cj_bytes} B")
    print("after a simulated day:")
    for table, (rows, size) in sizes.items():
        print(
            f"  {table:26s} {rows:9d} rows {size / 2**20:8.1f} MiB ({size / max(rows, 1):.0f} B/row)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_LARGE", 2000)))
