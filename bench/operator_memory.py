"""Where the operator's memory goes: resident memory with 0, COUNT and 2 x COUNT recurring
schedules registered, for each variant of the operator in the same run, each in a namespace of
its own (the only one it watches) on one control plane. The step from COUNT to 2 x COUNT is the
cost of a schedule; what is left at COUNT is the fixed cost (imports, threads, pools, and what
the first registrations leave). Then COUNT fire Jobs (suspended: no pods), which kopf watches
for the operator, for the cost of a Job. Beside RSS: the Python heap (tracemalloc, only with
BENCH_TRACEMALLOC=<frames>, slow) and glibc's malloc: bytes in use and free but kept.

Variants: the operator with glibc's default arenas (up to 8 a core, one per thread that
allocates), with MALLOC_ARENA_MAX=2 (the image's and the chart's setting), and with that and
PYTHONMALLOC=malloc (every Python object from glibc's malloc, not pymalloc's pools); with
BENCH_BASELINE_SOURCE=<dir> (a checkout's `operator/`, e.g. `git archive <commit> operator |
tar -x -C /tmp/base`, then /tmp/base/operator), also that code as the baseline;
BENCH_VARIANTS=<label>,... runs only those.
Usage: python bench/operator_memory.py [COUNT=1000]
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from _cluster import cpu_seconds, rss_mib, schedule, stack, wait_for
from kubernetes import client
from operator_apply import create_all
from sqlalchemy import func, select
from wfclock.core.names import SCHEDULE_UID_LABEL
from wfclock.db.store import engine_for
from wfclock.db.tables import workflow_schedules
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate

GROUP = ("wfclock.dev", "v1alpha1")
CRONS = ["0 3 * * *", "*/15 * * * *", "30 9 * * 1-5", "0 */2 * * *", "45 23 * * *"]
SETTLE_SECONDS = 20  # kopf's per-object workers end after 5 s idle; statuses settle
IDLE_CPU = 0.05  # of one core over 5 s: the operator has handled what was queued
KEPT_JOBS = 3  # successfulJobsHistoryLimit's default: a recurring schedule keeps up to 3
PROBE = Path(__file__).with_name("_memprobe.py")


def settle(pid: int, traced: bool) -> None:
    """Waits SETTLE_SECONDS; under tracemalloc also until the operator is idle (it lags far
    behind its watch events then, whose bodies wait in kopf's queues meanwhile)."""
    time.sleep(SETTLE_SECONDS)
    deadline = time.monotonic() + (600 if traced else 0)
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(5)
        if cpu_seconds(pid) - before < IDLE_CPU * 5:
            return


def fire_job(i: int) -> dict:
    return {
        "metadata": {"name": f"fire-{i}", "labels": {SCHEDULE_UID_LABEL: f"gone-{i % 100}"}},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "x", "image": "x", "command": ["true"]}],
                }
            },
        },
    }


def scheduled(engine, namespace: str) -> int:
    t = workflow_schedules
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(t)
            .where(t.c.namespace == namespace, t.c.status == "scheduled")
        ).scalar()


def ask(directory: Path, name: str, timeout: float = 900) -> dict:
    (directory / name).touch()
    answer = directory / f"{name}.json"
    wait_for(answer.exists, timeout, interval=0.3)
    return json.loads(answer.read_text())


def measure(plane, api, url, label: str, env: dict, count: int, frames: int) -> dict:
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"mem-{label}"
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"wfclock.dev/tenant": "bench"}}}
    )
    secret = {"url": base64.b64encode(url.encode()).decode()}
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "wfclock-database"}, "data": secret}
    )
    directory = Path(tempfile.mkdtemp(prefix=f"memory-{label}-"))
    full_env = {
        **{k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "PYTHONPATH")},
        "KUBECONFIG": str(plane.kubeconfig),
        "WFCLOCK_DATABASE_URL": url,
        "WFCLOCK_METRICS_PORT": "0",
        "WFCLOCK_HEALTH_PORT": str(free_port()),
        "WFCLOCK_LOG_LEVEL": "warning",
        "WFCLOCK_NAMESPACES": f'["{namespace}"]',
        "PROBE_DIR": str(directory),
        "PROBE_TRACEMALLOC": str(frames),
        **env,
    }
    engine = engine_for(url)
    proc = spawn([sys.executable, str(PROBE)], directory / "operator.log", env=full_env)
    try:
        settle(proc.pid, bool(frames))
        points = [(0, rss_mib(proc.pid), ask(directory, "ask-0"))]
        took = 0.0
        for step in (1, 2):
            first, start = (step - 1) * count, time.perf_counter()
            create_all(
                lambda i, first=first: objects.create_namespaced_custom_object(
                    *GROUP,
                    namespace,
                    "workflowschedules",
                    schedule(
                        f"s-{first + i}",
                        {"type": "recurring", "cron": CRONS[i % 5], "timezone": "UTC"},
                    ),
                ),
                count,
            )
            wait_for(lambda n=step * count: scheduled(engine, namespace) >= n, 3600, interval=1)
            took += time.perf_counter() - start
            settle(proc.pid, bool(frames))
            points.append((step * count, rss_mib(proc.pid), ask(directory, f"ask-{step}")))
        # Fire Jobs: kopf keeps a record of each Job it watches (`fire_finished`). Suspended,
        # so no pods; labelled as a fire's Job is, for a schedule that is not there.
        batch = client.BatchV1Api(api)
        create_all(lambda i: batch.create_namespaced_job(namespace, fire_job(i)), count)
        settle(proc.pid, bool(frames))
        points.append((2 * count, rss_mib(proc.pid), ask(directory, "ask-jobs")))
        trimmed = ask(directory, "ask-3-trim")
        trimmed_rss = rss_mib(proc.pid)
    finally:
        terminate(proc)
        engine.dispose()
    return {
        "points": points,
        "trimmed": (trimmed_rss, trimmed),
        "directory": directory,
        "rate": 2 * count / took,
    }


def top_sites(directory: Path, lines: int = 12) -> list[str]:
    """The allocation sites that grew most from COUNT to 2 x COUNT (innermost frame of the
    operator, kopf or the Kubernetes client that allocated, and where the bytes were made)."""
    before = tracemalloc.Snapshot.load(str(directory / "ask-1.snap"))
    after = tracemalloc.Snapshot.load(str(directory / "ask-2.snap"))
    interesting = ("kopf/", "wfclock/", "kubernetes/", "sqlalchemy/", "aiohttp/")

    def key(traceback) -> str:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in traceback]
        ours = [f for f in reversed(frames) if f.startswith(interesting) or "/wfclock/" in f]
        site = ours[0].split("/operator/")[-1] if ours else frames[0]
        return f"{site}  (allocated in {frames[-1].rsplit('/', 1)[-1]})"

    def grouped(snapshot) -> dict:
        sizes: dict[str, int] = {}
        for stat in snapshot.statistics("traceback"):
            sizes[key(stat.traceback)] = sizes.get(key(stat.traceback), 0) + stat.size
        return sizes

    a, b = grouped(before), grouped(after)
    growth = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in a.keys() | b.keys()), reverse=True)
    return [f"{size / 2**10:9.0f} KiB  {site}" for size, site in growth[:lines]]


def main(count: int) -> None:
    frames = int(os.environ.get("BENCH_TRACEMALLOC") or 0)
    variants = []
    if os.environ.get("BENCH_BASELINE_SOURCE"):
        source = os.environ["BENCH_BASELINE_SOURCE"]
        variants.append(("baseline", {"PYTHONPATH": source}))
    variants += [
        ("default-arenas", {}),
        ("arena-max-2", {"MALLOC_ARENA_MAX": "2"}),
        ("no-pymalloc", {"MALLOC_ARENA_MAX": "2", "PYTHONMALLOC": "malloc"}),
    ]
    if os.environ.get("BENCH_VARIANTS"):  # a comma-separated choice of the labels above
        chosen = os.environ["BENCH_VARIANTS"].split(",")
        variants = [(label, env) for label, env in variants if label in chosen]
    load_before = os.getloadavg()[0]
    results = {}
    with stack() as (plane, api, url):
        for label, env in variants:
            results[label] = measure(plane, api, url, label, env, count, frames)
    print(
        f"schedules: 0, {count}, {2 * count}; load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    mib = 2**20
    reference = None
    for label, env in variants:
        result = results[label]
        (_, idle, f0), (_, at_n, f1), (_, at_2n, f2), (_, with_jobs, _) = result["points"]
        per = (at_2n - at_n) / count * 1024
        fixed = at_n - per * count / 1024
        reference = reference or per
        print(f"{label} {env or ''}: registered {result['rate']:.0f}/s")
        print(
            f"  RSS: idle {idle:.0f} MiB, {count}: {at_n:.0f} MiB, {2 * count}: {at_2n:.0f} MiB; "
            f"per schedule {per:.1f} KiB (ratio to {variants[0][0]} {per / reference:.2f}), "
            f"fixed {fixed:.0f} MiB; projected at 20,000: {fixed + 20000 * per / 1024:.0f} MiB"
        )
        print(
            "  glibc malloc in use / free but kept: "
            + ", ".join(
                f"{f['malloc_in_use'] / mib:.0f}/{f['malloc_free_kept'] / mib:.0f} MiB"
                for f in (f0, f1, f2)
            )
            + f"; Python objects {f0['gc_objects']}, {f1['gc_objects']}, {f2['gc_objects']}"
            + f" ({(f2['gc_objects'] - f1['gc_objects']) / count:.0f} a schedule);"
            + f" threads {f2['threads']}"
        )
        print(
            f"  {count} fire Jobs more: {with_jobs:.0f} MiB, "
            f"{(with_jobs - at_2n) / count * 1024:.1f} KiB a Job; projected at 20,000 schedules "
            f"with {KEPT_JOBS} kept Jobs each: "
            f"{fixed + 20000 * (per + KEPT_JOBS * (with_jobs - at_2n) / count * 1024) / 1024:.0f} MiB"
        )
        rss, trimmed = result["trimmed"]
        print(
            f"  after malloc_trim(0): RSS {rss:.0f} MiB, free but kept {trimmed['malloc_free_kept'] / mib:.0f} MiB"
        )
        if frames:
            print(
                f"  Python heap (tracemalloc): {f0['traced'] / mib:.1f}, {f1['traced'] / mib:.1f}, "
                f"{f2['traced'] / mib:.1f} MiB; "
                f"{(f2['traced'] - f1['traced']) / count / 1024:.1f} KiB a schedule; grew most:"
            )
            for line in top_sites(result["directory"]):
                print("   ", line)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
