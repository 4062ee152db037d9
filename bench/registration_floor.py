"""Registration against its physical limit: COUNT WorkflowSchedules applied at once (16 threads)
until all are registered (state row `scheduled`, CronJob created, status `Scheduled`), against a
bare client that issues exactly the writes one registration needs (create the WorkflowSchedule,
create the CronJob, patch the status, create the Event), 16 threads, on the same control plane.
The bare client's CronJob is the one the operator writes (`build_cronjob`: labels, annotations,
launcher pod template, and the owner reference the garbage collector follows up).
The bare client runs before and after the operator (two namespaces, interleaved); the ratio is
against their mean. The old ratio (against bare CronJob creates only) is printed beside it.
Usage: python bench/registration_floor.py [COUNT=1000]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import operator_apply
from _cluster import (
    NAMESPACE,
    cpu_seconds,
    operator,
    plane_cpu,
    postgres_cpu,
    schedule,
    stack,
    wait_for,
)
from api_write_costs import status
from kubernetes import client
from operator_apply import (
    bare_cronjob,
    create_all,
    registered,
    statuses_scheduled,
)
from wfclock.core.builders import Schedule, build_cronjob, with_digest
from wfclock.core.model import WorkflowScheduleSpec
from wfclock.db.store import engine_for
from wfclock.settings import Settings

GROUP = ("wfclock.dev", "v1alpha1")
# Fixed times of day (the daylight-saving policy's costlier path), none due within minutes of
# most moments: a fire during a run would make the CronJob controller create Jobs in one
# phase and not another (with `*/15`, the floor after the operator paid for 400 Jobs).
FIXED_TIMES = ["0 3 * * *", "30 9 * * 1-5", "45 23 * * *", "15 4 1 * *", "0 12 * * 0"]
SETTINGS = Settings(database_url="postgresql://unused/bench")


def event(ns: str, i: int) -> dict:
    return {
        "metadata": {"generateName": f"f-{i}."},
        "type": "Normal",
        "reason": "Registered",
        "message": f"registered CronJob f-{i}-c0305",
        "source": {"component": "wfclock"},
        "involvedObject": {
            "apiVersion": "wfclock.dev/v1alpha1",
            "kind": "WorkflowSchedule",
            "name": f"f-{i}",
            "namespace": ns,
        },
    }


def trigger(i: int) -> dict:
    return operator_apply.trigger(i, FIXED_TIMES)


def registered_cronjob(created: dict) -> dict:
    """The CronJob the operator writes for this WorkflowSchedule: its labels, annotations,
    owner reference (the garbage collector's work) and launcher pod template."""
    meta = created["metadata"]
    spec = WorkflowScheduleSpec.model_validate(created["spec"])
    parsed = Schedule(meta["name"], meta["namespace"], meta["uid"], spec, datetime.now(UTC))
    return with_digest(build_cronjob(parsed, SETTINGS))


def floor_client(api, ns: str, count: int) -> float:
    """The four writes of one registration, one schedule after another in each of 16 threads."""
    objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    batch = client.BatchV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})

    def one(i: int) -> None:
        created = objects.create_namespaced_custom_object(
            *GROUP, ns, "workflowschedules", schedule(f"f-{i}", trigger(i))
        )
        batch.create_namespaced_cron_job(ns, registered_cronjob(created))
        objects.patch_namespaced_custom_object_status(
            *GROUP, ns, "workflowschedules", f"f-{i}", status(i)
        )
        core.create_namespaced_event(ns, event(ns, i))

    start = time.perf_counter()
    create_all(one, count)
    return time.perf_counter() - start


def cronjobs_only(api, ns: str, count: int) -> float:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    batch = client.BatchV1Api(api)
    start = time.perf_counter()
    create_all(lambda i: batch.create_namespaced_cron_job(ns, bare_cronjob(i)), count)
    return time.perf_counter() - start


def main(count: int) -> None:
    load_before = os.getloadavg()
    with stack() as (plane, api, url):
        objects = client.CustomObjectsApi(api)
        engine = engine_for(url)
        old_bare = cronjobs_only(api, "bare-cronjobs", count)
        plane_before = plane_cpu(plane)
        floor_a = floor_client(api, "floor-a", count)
        floor_plane = plane_cpu(plane) - plane_before
        log = Path(tempfile.mkdtemp()) / "operator.log"
        with operator(plane, url, log) as proc:
            time.sleep(3)  # the operator is up and watching
            cpu_before = plane_cpu(plane), cpu_seconds(proc.pid), postgres_cpu(url)
            start = time.perf_counter()
            create_all(
                lambda i: objects.create_namespaced_custom_object(
                    *GROUP, NAMESPACE, "workflowschedules", schedule(f"s-{i}", trigger(i))
                ),
                count,
            )
            wait_for(lambda: registered(engine) >= count, 3600, interval=0.5)
            wait_for(lambda: statuses_scheduled(objects) >= count, 600, interval=0.2)
            took = time.perf_counter() - start
            cpu = [
                after - before
                for before, after in zip(
                    cpu_before,
                    (plane_cpu(plane), cpu_seconds(proc.pid), postgres_cpu(url)),
                    strict=True,
                )
            ]
        floor_b = floor_client(api, "floor-b", count)
    floor = (floor_a + floor_b) / 2
    print(
        f"schedules: {count}; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print(f"bare client, the four writes x {count}:  {floor_a:.1f} s before, {floor_b:.1f} s after")
    print(f"bare client, {count} CronJob creates:    {old_bare:.1f} s")
    print(f"wfclock, {count} schedules registered:   {took:.1f} s ({count / took:.0f}/s)")
    print(
        f"CPU (s): control plane {floor_plane:.1f} for the four writes (before), "
        f"{cpu[0]:.1f} with wfclock; operator {cpu[1]:.1f}; Postgres {cpu[2]:.1f}"
    )
    print(f"ratio wfclock/four writes: {took / floor:.2f} (goal <= 1.25)")
    print(f"old ratio wfclock/CronJob creates: {took / old_bare:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SCHEDULES", 1000)))
