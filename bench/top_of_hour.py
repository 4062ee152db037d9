"""The top of the hour on the real node: COUNT wfclock schedules and COUNT bare CronJobs (pod
`true`, same image) all firing in the same minute on the local node. Fire-to-run latency (the
scheduled minute to the launcher's `workflow_runs` row, and to the pod seen Succeeded) against
the bare CronJobs' minute-to-pod-Succeeded, p50 and p99; the peak of Postgres connections during
the burst (polled every 0.2 s) against the server's `max_connections`; and every fire accounted
by `wfclock_devstack.accounting` (croniter, not wfclock's maths). The node's kubelet keeps its
default `maxPods` of 110: past 55 of each kind, the scheduler holds the pods that do not fit
Pending until pods before them finish, for wfclock's and the bare ones alike, so the latencies
then measure the node's pod throughput.
Usage: python bench/top_of_hour.py [COUNT=40]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _cluster import BURST_DEADLINE, NAMESPACE, api_requests, operator, schedule
from kubernetes import client
from node_latency import (
    JOB_LABEL,
    PodsDone,
    bare_cronjob,
    fired_minute,
    line,
    prepare,
    wait_registered,
)
from wfclock_devstack.accounting import Change, account
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.processes import wait_until


class PeakConnections:
    """The most connections to the database seen at once (this poller's own not counted)."""

    def __init__(self, url: str):
        self.peak, self._stop = 0, threading.Event()
        self._conn = psycopg.connect(url, autocommit=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            (n,) = self._conn.execute(
                "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()
            self.peak = max(self.peak, n)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        (limit,) = self._conn.execute("SHOW max_connections").fetchone()
        self._conn.close()
        return int(limit)


def main(count: int) -> None:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="wfclock-bench-top-"))
    plane = ControlPlane().start()
    node = pg = None
    try:
        node = Node(plane).start()
        pg, url, image, api, env = prepare(plane, node)
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        objects = client.CustomObjectsApi(api)
        with operator(plane, url, work / "operator.log", **env):
            pods = PodsDone(core)
            # The minute they all fire: far enough for 2 x COUNT creates and COUNT registrations
            # on a loaded machine (about 10 of each a second).
            lead = timedelta(minutes=3, seconds=count / 5)
            minute = (datetime.now(UTC) + lead).replace(second=0, microsecond=0)
            cron = f"{minute.minute} {minute.hour} * * *"
            histories = {}
            for i in range(count):
                trigger = {"type": "recurring", "cron": cron, "timezone": "UTC"}
                spec = schedule(f"wf-{i}", trigger, **BURST_DEADLINE)
                created = objects.create_namespaced_custom_object(
                    "wfclock.dev", "v1alpha1", NAMESPACE, "workflowschedules", spec
                )
                uid = uuid.UUID(created["metadata"]["uid"])
                histories[uid] = [Change(datetime.now(UTC), spec["spec"])]
                batch.create_namespaced_cron_job(NAMESPACE, bare_cronjob(f"bare-{i}", cron, image))
            wait_registered(objects, count, (minute - datetime.now(UTC)).total_seconds())
            if datetime.now(UTC) >= minute - timedelta(seconds=5):
                raise SystemExit("registration took too long for the chosen minute; try fewer")
            print(f"{count} wfclock schedules and {count} bare CronJobs fire at {minute:%H:%M} UTC")
            time.sleep(max(0.0, (minute - datetime.now(UTC)).total_seconds() - 5))
            peak = PeakConnections(url)
            requests_before = api_requests(api)

            def runs() -> list[tuple[datetime, datetime]]:
                with psycopg.connect(url) as conn:
                    return conn.execute(
                        "SELECT (payload->>'scheduledFor')::timestamptz, created_at "
                        "FROM workflow_runs"
                    ).fetchall()

            def bare_done() -> dict[str, float]:
                return {
                    name: seen
                    for name, (seen, pod_labels) in list(pods.done.items())
                    if pod_labels.get("bench") == "bare"
                }

            def wfclock_done() -> list[float]:
                return [
                    seen - fired_minute(pod_labels[JOB_LABEL]).timestamp()
                    for seen, pod_labels in list(pods.done.values())
                    if pod_labels.get("wfclock.dev/registration") == "launcher-pod"
                ]

            wait_until(
                lambda: (
                    len(runs()) >= count
                    and len(bare_done()) >= count
                    and len(wfclock_done()) >= count
                ),
                1200 + 2 * count,  # past 55 of each, the node's pod throughput bounds it
                "every fire of both kinds",
                interval=2,
            )
            limit = peak.stop()
            requests = api_requests(api) - requests_before
            pods.stop()
            report = account(url, histories, minute + timedelta(seconds=1))
            wfclock_run = [(created - at).total_seconds() for at, created in runs()]
            bare = [seen - minute.timestamp() for seen in bare_done().values()]
            done = wfclock_done()
        print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
        print(line("bare CronJob, pod `true`: minute -> pod Succeeded", bare))
        print(line("wfclock fire: minute -> workflow_runs row", wfclock_run, bare))
        print(line("wfclock fire: minute -> pod Succeeded", done, bare))
        print(f"peak Postgres connections during the burst: {peak.peak} (max_connections {limit})")
        print(f"accounting: {report.line()}")
        print(f"failed pods: {len(pods.failed)}")
        print(f"API writes during the burst, per fire of either kind ({2 * count} fires):")
        for (verb, resource, sub), n in sorted(requests.items(), key=lambda kv: -kv[1]):
            if verb in ("POST", "PUT", "PATCH", "DELETE") and n >= count / 10:
                print(f"  {n / (2 * count):5.2f} {verb} {resource}{'/' + sub if sub else ''}")
        if not report.ok:
            raise SystemExit("fires were lost, duplicated or unexpected")
    finally:
        try:
            if node is not None:
                node.stop()
        finally:
            plane.remove()
            if pg is not None:
                pg.stop()
                shutil.rmtree(pg.root, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_TOP", 40)))
