"""One-time release lag: 200 one-time schedules due in the same second; the lag from runAt to
the Job being un-suspended, as observed by a watch on the Jobs. Prints p50 and p99 (target p99
under 1 s) and the operator's memory.
Usage: python bench/release_lag.py [COUNT]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _cluster import NAMESPACE, operator, rss_mib, schedule, stack, wait_for
from kubernetes import client
from sqlalchemy import func, select
from wfclock.db.store import engine_for
from wfclock.db.tables import workflow_schedules


def bare_release(batch, released: dict, count: int) -> list[float]:
    """Baseline: a bare client un-suspends `count` suspended Jobs at once, 16 threads."""
    template = {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "x", "image": "x", "command": ["true"]}],
        }
    }
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: batch.create_namespaced_job(
                    NAMESPACE,
                    {
                        "metadata": {"name": f"bare-{i}"},
                        "spec": {"suspend": True, "template": template},
                    },
                ),
                range(count),
            )
        )
    start = datetime.now(UTC)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: batch.patch_namespaced_job(
                    f"bare-{i}", NAMESPACE, {"spec": {"suspend": False}}, _preload_content=False
                ),
                range(count),
            )
        )
    wait_for(lambda: sum(n.startswith("bare-") for n in released) >= count, 120)
    return sorted((t - start).total_seconds() for n, t in released.items() if n.startswith("bare-"))


def p99(sorted_lags: list[float]) -> float:
    return sorted_lags[max(0, int(len(sorted_lags) * 0.99) - 1)]


def percentiles(lags: list[float]) -> str:
    p50 = statistics.median(lags)
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99(lags) * 1000:.0f} ms, min {lags[0] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms"


def main(count: int) -> None:
    with stack() as (plane, api, url):
        objects, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
        engine = engine_for(url)
        released: dict[str, datetime] = {}
        stop = threading.Event()

        def observe():
            # A raw watch: the client's model deserialisation would delay what it observes.
            while not stop.is_set():
                response = batch.list_namespaced_job(
                    NAMESPACE, watch=True, timeout_seconds=5, _preload_content=False
                )
                for line in response:
                    job = json.loads(line)["object"]
                    name = job["metadata"]["name"]
                    if job["spec"].get("suspend") is False and name not in released:
                        released[name] = datetime.now(UTC)
                    if stop.is_set():
                        break

        watcher = threading.Thread(target=observe, daemon=True)
        watcher.start()
        baseline = bare_release(batch, released, count)
        released.clear()
        with operator(plane, url, Path(tempfile.mkdtemp()) / "operator.log") as proc:
            time.sleep(3)
            run_at = (datetime.now(UTC) + timedelta(seconds=max(30, count // 8))).replace(
                microsecond=0
            )
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda i: objects.create_namespaced_custom_object(
                            "wfclock.dev",
                            "v1alpha1",
                            NAMESPACE,
                            "workflowschedules",
                            schedule(
                                f"once-{i}", {"type": "schedule", "runAt": run_at.isoformat()}
                            ),
                        ),
                        range(count),
                    )
                )

            def registered():
                with engine.connect() as conn:
                    return (
                        conn.execute(select(func.count()).select_from(workflow_schedules)).scalar()
                        >= count
                    )

            wait_for(registered, 600)
            assert datetime.now(UTC) < run_at, "registration took longer than the lead time"
            wait_for(lambda: sum(not n.startswith("bare-") for n in released) >= count, 120)
            memory = rss_mib(proc.pid)
        stop.set()
    lags = sorted(
        (t - run_at).total_seconds() for n, t in released.items() if not n.startswith("bare-")
    )
    print(f"one-time schedules due in the same second: {count}")
    print(f"bare client un-suspending {count} Jobs at once (16 threads): {percentiles(baseline)}")
    print(f"wfclock release lag (runAt -> Job un-suspended, seen by a watch): {percentiles(lags)}")
    print(f"p99 ratio wfclock/bare: {p99(lags) / p99(baseline):.2f} (target p99 < 1000 ms)")
    print(f"operator RSS with {count} pending one-time schedules: {memory:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
