"""What each API write a registration needs costs the control plane, against the bare client's
CronJob create: COUNT writes of each kind (16 threads), the CPU etcd, kube-apiserver and
kube-controller-manager spend on them, and from that the lowest apply ratio this machine allows
even with an operator and a client that cost nothing.
Usage: python bench/api_write_costs.py [COUNT]
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from _cluster import plane_cpu, schedule, stack
from kubernetes import client
from operator_apply import bare_cronjob, create_all, trigger
from wfclock.core.firetime import parse_cron
from wfclock.core.nextfires import next_fires_view

NS = "costs"


def status(i: int) -> dict:
    """A registered schedule's status as the operator writes it (kopf's bookkeeping included)."""
    t = trigger(i)
    return {
        "status": {
            "phase": "Scheduled",
            "observedGeneration": 1,
            "registered": {"kind": "CronJob", "name": f"n-{i}-c0305"},
            "nextFires": next_fires_view(
                parse_cron(t["cron"]), t["timezone"], datetime.now(UTC), 5
            ),
            "lastFireAt": None,
            "lastRunId": None,
            "lastResult": None,
            "lastError": None,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Registered",
                    "message": f"CronJob n-{i}-c0305 is registered",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-11-26T00:00:00.000Z",
                }
            ],
            "kopf": {
                "lastHandledConfiguration": json.dumps({"spec": schedule(f"n-{i}", t)["spec"]})
            },
        }
    }


def event(i: int) -> dict:
    return {
        "metadata": {"generateName": f"n-{i}."},
        "type": "Normal",
        "reason": "Registered",
        "message": f"registered CronJob n-{i}-c0305",
        "source": {"component": "wfclock"},
        "involvedObject": {
            "apiVersion": "wfclock.dev/v1alpha1",
            "kind": "WorkflowSchedule",
            "name": f"n-{i}",
            "namespace": NS,
        },
    }


def main(count: int) -> None:
    with stack() as (plane, api, _):
        objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        batch = client.BatchV1Api(api)
        core.create_namespace({"metadata": {"name": NS}})
        group = ("wfclock.dev", "v1alpha1", NS, "workflowschedules")

        def measure(fn) -> tuple[float, float]:
            before, start = plane_cpu(plane), time.perf_counter()
            create_all(fn, count)
            return time.perf_counter() - start, plane_cpu(plane) - before

        costs = {
            "CronJob create (bare client)": measure(
                lambda i: batch.create_namespaced_cron_job(NS, bare_cronjob(i))
            ),
            "WorkflowSchedule create (the apply)": measure(
                lambda i: objects.create_namespaced_custom_object(
                    *group, schedule(f"n-{i}", trigger(i))
                )
            ),
            "WorkflowSchedule status patch": measure(
                lambda i: objects.patch_namespaced_custom_object_status(*group, f"n-{i}", status(i))
            ),
            "CronJob create (the registration)": measure(
                lambda i: batch.create_namespaced_cron_job(NS, bare_cronjob(i, "reg"))
            ),
            "Event create (Registered)": measure(
                lambda i: core.create_namespaced_event(NS, event(i))
            ),
            "finalizer patch (without the policy)": measure(
                lambda i: objects.patch_namespaced_custom_object(
                    *group, f"n-{i}", {"metadata": {"annotations": {"a": "b"}}}
                )
            ),
        }
    bare_wall, bare_cpu = costs["CronJob create (bare client)"]
    print(f"{count} writes of each kind; control plane CPU, and as a multiple of the bare create:")
    for name, (wall, cpu) in costs.items():
        print(f"  {name:40s} {cpu:5.2f} s  x{cpu / bare_cpu:4.2f}   (wall {wall:4.2f} s)")
    needed = [k for k in costs if "bare" not in k and "without" not in k]
    floor_cpu = sum(costs[k][1] for k in needed)
    cores = os.cpu_count() or 1
    print(
        f"control plane CPU one registration needs (apply, CronJob, status, Event): "
        f"x{floor_cpu / bare_cpu:.2f} the bare create"
    )
    print(
        f"on {cores} cores, with a free operator and client, registering {count} takes at least "
        f"{floor_cpu / cores:.1f} s against the bare client's {bare_wall:.1f} s: "
        f"ratio >= {floor_cpu / cores / bare_wall:.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
