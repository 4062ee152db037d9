"""Fires as real containers on the local node: how long from a CronJob's scheduled minute to the
run row, against a bare CronJob whose pod runs `true` from the same image on the same node, in
the same minutes; and how long a launcher pod takes from creation to done, against a bare
`python -c pass` pod of the same image.

Several every-minute schedules of each kind fire together, so 50 fires of each come in a few
minutes (and the figures include that many pods starting at once on this machine's cores).
wfclock: scheduled minute -> `workflow_runs.created_at` (written by the launcher in its pod);
bare: scheduled minute -> the pod seen Succeeded by a watch (the kubelet has reported its exit).
For wfclock's pods the same "seen Succeeded" is printed too, the like-for-like figure.

Usage: python bench/node_latency.py [SCHEDULES_PER_KIND=10] [FIRES=50] [POD_STARTS=15]
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _cluster import NAMESPACE, operator, schedule
from kubernetes import client, config, watch
from wfclock.db.migrate import upgrade
from wfclock_devstack import podstack
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.processes import wait_until
from wfclock_devstack.repo import repository

JOB_LABEL = "batch.kubernetes.io/job-name"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def build_image() -> Path:
    script = repository() / "scripts" / "build-image.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def pod_spec(image: str, command: list[str]) -> dict:
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": RESTRICTED_POD,
        "containers": [
            {
                "name": "main",
                "image": image,
                "imagePullPolicy": "Never",
                "command": command,
                "securityContext": RESTRICTED_CONTAINER,
            }
        ],
    }


def prepare(plane, node):
    """A migrated bench database that pods reach, the image imported into the node, the CRDs
    and a restricted bench namespace: (postgres, its URL, the image, an API client, the
    operator's settings for launcher pods on the node)."""
    pg = podstack.postgres_for(node)
    pg.start()
    url = pg.create_database("bench")
    upgrade(url)
    image = node.import_image(build_image())[0]
    plane.install_crds()
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    labels = {"wfclock.dev/tenant": "bench", "pod-security.kubernetes.io/enforce": "restricted"}
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE, "labels": labels}})
    plane.wait_schedules_admitted(NAMESPACE, "bench")
    env = {
        "WFCLOCK_LAUNCHER_IMAGE": image,
        "WFCLOCK_LAUNCHER_IMAGE_PULL_POLICY": "Never",
        "WFCLOCK_LAUNCHER_DATABASE_HOST": f"{node.host_ip}:{pg.port}",
    }
    return pg, url, image, api, env


def bare_cronjob(name: str, cron: str, image: str) -> dict:
    """The baseline: a CronJob in UTC whose pod runs `true` from the same image."""
    labels = {"bench": "bare"}
    template = {"metadata": {"labels": labels}, "spec": pod_spec(image, ["true"])}
    return {
        "metadata": {"name": name},
        "spec": {
            "schedule": cron,
            "timeZone": "UTC",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {"backoffLimit": 0, "template": template},
            },
        },
    }


def wait_registered(objects, count: int, timeout: float) -> None:
    """Until `count` WorkflowSchedules of the bench namespace are Scheduled."""

    def registered() -> bool:
        items = objects.list_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", NAMESPACE, "workflowschedules"
        )["items"]
        phases = [(i.get("status") or {}).get("phase") for i in items]
        return phases.count("Scheduled") == count

    wait_until(registered, timeout, "the schedules to be registered", interval=1)


class PodsDone:
    """When each pod of the namespace was first seen Succeeded (or Failed), by a watch."""

    def __init__(self, core: client.CoreV1Api):
        self.core, self.done, self.failed = core, {}, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = self.core.list_namespaced_pod(NAMESPACE)
                    for pod in listing.items:
                        self._seen(pod)
                    version = listing.metadata.resource_version
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    NAMESPACE,
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    version = event["object"].metadata.resource_version
                    self._seen(event["object"])
            except Exception:  # noqa: BLE001 - a watch that expired starts again from a list
                version = None

    def _seen(self, pod) -> None:
        name, phase = pod.metadata.name, pod.status.phase
        if phase in ("Succeeded", "Failed") and name not in self.done:
            self.done[name] = (time.time(), pod.metadata.labels or {})
            if phase == "Failed":
                self.failed.append(name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered), p99


def line(name: str, values: list[float], base: list[float] | None = None) -> str:
    p50, p99 = percentiles(values)
    text = f"{name:<52} n={len(values):3d}  p50 {p50:6.2f} s  p99 {p99:6.2f} s"
    if base:
        b50, b99 = percentiles(base)
        text += f"  ratio p50 {p50 / b50:4.2f}  p99 {p99 / b99:4.2f}"
    return text


def fired_minute(job_name: str) -> datetime:
    return datetime.fromtimestamp(int(job_name.rpartition("-")[2]) * 60, UTC)


def main() -> None:
    per_kind = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    pod_starts = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    work = Path(tempfile.mkdtemp(prefix="wfclock-bench-node-"))
    plane = ControlPlane().start()
    node = pg = None
    try:
        node = Node(plane).start()
        pg, url, image, api, env = prepare(plane, node)
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        objects = client.CustomObjectsApi(api)
        env["WFCLOCK_MINIMUM_INTERVAL_MINUTES"] = "1"
        with operator(plane, url, work / "operator.log", **env):
            pods = PodsDone(core)
            every_minute = {"type": "recurring", "cron": "* * * * *", "timezone": "UTC"}
            for i in range(per_kind):
                objects.create_namespaced_custom_object(
                    "wfclock.dev", "v1alpha1", NAMESPACE, "workflowschedules",
                    schedule(f"wf-{i}", every_minute),
                )  # fmt: skip
                batch.create_namespaced_cron_job(
                    NAMESPACE, bare_cronjob(f"bare-{i}", "* * * * *", image)
                )
            wait_registered(objects, per_kind, 120)
            first = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
            print(f"{per_kind} wfclock schedules and {per_kind} bare CronJobs, every minute, "
                  f"fires from {first:%H:%M} UTC", flush=True)  # fmt: skip

            def runs() -> list[tuple[datetime, datetime, str]]:
                with psycopg.connect(url) as conn:
                    return conn.execute(
                        "SELECT (payload->>'scheduledFor')::timestamptz, created_at, "
                        "trigger_metadata->>'source' FROM workflow_runs"
                    ).fetchall()

            def bare_done(until: datetime) -> dict[str, float]:
                return {
                    name: seen
                    for name, (seen, pod_labels) in list(pods.done.items())
                    if pod_labels.get("bench") == "bare"
                    and first <= fired_minute(pod_labels[JOB_LABEL]) <= until
                }

            # Until both kinds have `wanted` fires done; a minute whose Job was skipped (the
            # previous one still running: concurrencyPolicy Forbid, on both kinds) adds none.
            far = first + timedelta(hours=1)
            wait_until(
                lambda: (
                    len([r for r in runs() if r[0] >= first]) >= wanted
                    and len(bare_done(far)) >= wanted
                ),
                1800,
                f"{wanted} fires of both kinds",
                interval=2,
            )
            last = datetime.now(UTC).replace(second=0, microsecond=0)
            for i in range(per_kind):
                objects.patch_namespaced_custom_object(
                    "wfclock.dev", "v1alpha1", NAMESPACE, "workflowschedules", f"wf-{i}",
                    {"spec": {"paused": True}},
                )  # fmt: skip
                batch.patch_namespaced_cron_job(f"bare-{i}", NAMESPACE, {"spec": {"suspend": True}})

            def window_finished() -> bool:
                """Every Job of the minutes up to `last` has finished (or is gone)."""
                return all(
                    j.status.succeeded or j.status.failed
                    for j in batch.list_namespaced_job(NAMESPACE).items
                    if fired_minute(j.metadata.name) <= last
                )

            wait_until(window_finished, 300, "the last minute's Jobs to finish", interval=2)
            time.sleep(3)  # the watch sees the last pods
            ours = [r for r in runs() if first <= r[0] <= last]
            recovered = [r for r in ours if not r[2].startswith("wf-")]
            wfclock_run = [(created - at).total_seconds() for at, created, _ in ours]
            bare = [
                seen - fired_minute(pods.done[name][1][JOB_LABEL]).timestamp()
                for name, seen in bare_done(last).items()
            ]
            wfclock_done = [
                seen - fired_minute(pod_labels[JOB_LABEL]).timestamp()
                for seen, pod_labels in list(pods.done.values())
                if pod_labels.get("wfclock.dev/registration") == "launcher-pod"
                and first <= fired_minute(pod_labels[JOB_LABEL]) <= last
            ]

            # Pod start: the launcher's pod (a wfclock CronJob's template, one fire statement
            # for an instant before the schedule existed: skipped, exit 0) against a bare
            # `python -c pass` pod, one at a time, interleaved.
            (cronjob,) = [
                c for c in batch.list_namespaced_cron_job(NAMESPACE).items
                if c.metadata.name.startswith("wf-0-")
            ]  # fmt: skip
            template = api.sanitize_for_serialization(cronjob.spec.job_template.spec.template)
            old_minute = int(first.timestamp()) // 60 - 10_000
            starts: dict[str, list[float]] = {"launcher": [], "python": []}
            for i in range(pod_starts):
                for kind in ("launcher", "python"):
                    name = f"start-{kind}-{i}"
                    if kind == "launcher":
                        job = f"{cronjob.metadata.name}-{old_minute - i}"
                        body = {"metadata": {"name": name, "labels": {JOB_LABEL: job}},
                                "spec": template["spec"]}  # fmt: skip
                    else:
                        body = {"metadata": {"name": name},
                                "spec": pod_spec(image, ["python", "-c", "pass"])}  # fmt: skip
                    began = time.time()
                    core.create_namespaced_pod(NAMESPACE, body)
                    wait_until(lambda n=name: n in pods.done, 120, f"pod {name}", interval=0.05)
                    starts[kind].append(pods.done[name][0] - began)
            pods.stop()

        print(line("bare CronJob, pod `true`: minute -> pod Succeeded", bare))
        print(line("wfclock fire: minute -> pod Succeeded", wfclock_done, bare))
        print(line("wfclock fire: minute -> workflow_runs row", wfclock_run, bare))
        print(line("pod `python -c pass`: created -> Succeeded", starts["python"]))
        print(line("launcher pod: created -> Succeeded", starts["launcher"], starts["python"]))
        print(f"minutes {first:%H:%M}-{last:%H:%M} UTC; runs launched by the operator's accounting "
              f"instead of their Job: {len(recovered)}; failed pods: {len(pods.failed)}")  # fmt: skip
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
    main()
