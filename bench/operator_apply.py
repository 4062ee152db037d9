"""1,000 WorkflowSchedules applied at once until all are registered (CronJob created, state row
written, status Scheduled), against a bare Python client creating 1,000 CronJobs on the same
control plane. Prints both times and the ratio (target at most 2), the API requests each
registration made, the CPU of the operator and of the control plane, and the operator's memory.
Usage: python bench/operator_apply.py [COUNT]
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _cluster import (
    NAMESPACE,
    api_requests,
    cpu_seconds,
    operator,
    plane_cpu,
    rss_mib,
    schedule,
    stack,
    wait_for,
)
from kubernetes import client
from sqlalchemy import func, select
from wfclock.db.store import engine_for
from wfclock.db.tables import workflow_schedules

CRONS = ["0 3 * * *", "*/15 * * * *", "30 9 * * 1-5", "0 */2 * * *", "45 23 * * *"]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"]
CRONJOB_TEMPLATE = {
    "spec": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "x", "image": "x", "command": ["true"]}],
            }
        }
    }
}


def trigger(i: int, crons: list[str] = CRONS) -> dict:
    return {"type": "recurring", "cron": crons[i % len(crons)], "timezone": ZONES[i % len(ZONES)]}


def create_all(fn, count: int, workers: int = 16) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, range(count)))


def bare_cronjob(i: int, prefix: str = "bare") -> dict:
    return {
        "metadata": {"name": f"{prefix}-{i}"},
        "spec": {
            "schedule": "0 3 * * *",
            "timeZone": "Europe/Berlin",
            "jobTemplate": CRONJOB_TEMPLATE,
        },
    }


def bare_cronjobs(api, count: int, namespace: str = NAMESPACE) -> float:
    batch = client.BatchV1Api(api)
    start = time.perf_counter()
    create_all(lambda i: batch.create_namespaced_cron_job(namespace, bare_cronjob(i)), count)
    return time.perf_counter() - start


def registered(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(workflow_schedules)
            .where(workflow_schedules.c.status == "scheduled")
        ).scalar()


def statuses_scheduled(objects) -> int:
    items = objects.list_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", NAMESPACE, "workflowschedules"
    )["items"]
    return sum((o.get("status") or {}).get("phase") == "Scheduled" for o in items)


def main(count: int) -> None:
    with stack() as (plane, api, url):
        plane_before = plane_cpu(plane)
        bare = bare_cronjobs(api, count)
        bare_plane_cpu = plane_cpu(plane) - plane_before
        objects = client.CustomObjectsApi(api)
        engine = engine_for(url)
        log = Path(tempfile.mkdtemp()) / "operator.log"
        with operator(plane, url, log) as proc:
            time.sleep(3)  # the operator is up and watching
            idle = rss_mib(proc.pid)
            cpu_before = cpu_seconds(proc.pid)
            plane_before = plane_cpu(plane)
            requests_before = api_requests(api)
            start = time.perf_counter()
            create_all(
                lambda i: objects.create_namespaced_custom_object(
                    "wfclock.dev",
                    "v1alpha1",
                    NAMESPACE,
                    "workflowschedules",
                    schedule(f"s-{i}", trigger(i)),
                ),
                count,
            )
            # The state rows are cheap to poll; the statuses (a list of every schedule) only
            # once the rows are all there, so polling does not load the control plane.
            wait_for(lambda: registered(engine) >= count, 1800, interval=0.5)
            wait_for(lambda: statuses_scheduled(objects) >= count, 600, interval=0.2)
            took = time.perf_counter() - start
            requests = api_requests(api) - requests_before
            cronjobs = len(
                client.BatchV1Api(api)
                .list_namespaced_cron_job(NAMESPACE, label_selector="wfclock.dev/schedule")
                .items
            )
            loaded = rss_mib(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu_before
            wfclock_plane_cpu = plane_cpu(plane) - plane_before
        assert cronjobs == count, (cronjobs, count)
    print(f"schedules: {count}")
    print(f"bare client, {count} CronJobs:          {bare:.1f} s ({count / bare:.0f}/s)")
    print(f"wfclock, {count} schedules registered:  {took:.1f} s ({count / took:.0f}/s)")
    print(f"ratio wfclock/bare: {took / bare:.2f} (target <= 2)")
    print("API requests per schedule (the apply's own create included):")
    for (verb, resource, sub), n in sorted(requests.items(), key=lambda kv: -kv[1]):
        if n >= count / 20:
            print(f"  {n / count:5.2f} {verb} {resource}{'/' + sub if sub else ''}")
    print(f"operator CPU while registering: {cpu:.1f} s ({cpu / took:.0%} of one core)")
    print(
        f"control plane CPU (etcd, apiserver, controller-manager): bare {bare_plane_cpu:.1f} s, "
        f"wfclock {wfclock_plane_cpu:.1f} s"
    )
    print(f"operator RSS: idle {idle:.0f} MiB, with {count} schedules {loaded:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
