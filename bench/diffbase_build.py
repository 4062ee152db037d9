"""kopf builds a schedule's diff-base essence on every watch event. Time of one build with the
operator's slim storage against kopf's own, on a registered schedule as the API returns it
(managed fields and status included). Usage: python bench/diffbase_build.py [COUNT]
"""

from __future__ import annotations

import sys
import timeit

import kopf
from kopf._cogs.structs.bodies import Body
from wfclock.controller.handlers import SlimStatusDiffBase

FIELD = "status.kopf.lastHandledConfiguration"


def registered_schedule() -> dict:
    spec = {
        "tenant": "acme",
        "workflowId": "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11",
        "workflowVersion": 1,
        "paused": False,
        "missedFires": "latest",
        "trigger": {"type": "recurring", "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
    }
    return {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {
            "name": "nightly",
            "namespace": "acme",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "42",
            "finalizers": ["wfclock.dev/finalizer"],
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "fieldsV1": {"f:spec": {f"f:{k}": {} for k in spec}},
                },
                {
                    "manager": "kopf",
                    "operation": "Update",
                    "subresource": "status",
                    "fieldsV1": {
                        "f:status": {
                            f"f:{k}": {".": {}, "f:a": {}, "f:b": {}}
                            for k in ("conditions", "kopf", "nextFires", "registered")
                        }
                    },
                },
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Scheduled",
            "observedGeneration": 1,
            "registered": {"kind": "CronJob", "name": "nightly-c0305"},
            "nextFires": [
                {"at": f"2026-11-2{d}T02:00:00Z", "local": f"2026-11-2{d}T03:00:00+01:00"}
                for d in range(5)
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Registered",
                    "message": "CronJob nightly-c0305 is registered",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-11-26T00:00:00Z",
                }
            ],
            "kopf": {"lastHandledConfiguration": '{"spec": {}}'},
        },
    }


def main(count: int) -> None:
    body = Body(registered_schedule())
    theirs = kopf.StatusDiffBaseStorage(field=FIELD)
    ours = SlimStatusDiffBase(field=FIELD)
    assert ours.build(body=body) == theirs.build(body=body)
    kopf_us = timeit.timeit(lambda: theirs.build(body=body), number=count) / count * 1e6
    ours_us = timeit.timeit(lambda: ours.build(body=body), number=count) / count * 1e6
    print(f"kopf's StatusDiffBaseStorage.build: {kopf_us:.1f} us")
    print(f"wfclock's SlimStatusDiffBase.build: {ours_us:.1f} us")
    print(f"ratio kopf/wfclock: {kopf_us / ours_us:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
