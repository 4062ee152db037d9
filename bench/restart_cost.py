"""What an operator restart costs when nothing changed: COUNT schedules (half one-time, due in
hours, half recurring, none firing during the run) registered by the operator, which is then
stopped and started again. While it resumes: the API server's write requests (its own
`apiserver_request_total`, by verb and resource), the database's writes (`pg_stat_database`:
rows inserted, updated, deleted; transactions), and the time until it is ready (every pending
one-time release queued, its `wfclock_one_time_releases_queued` gauge), against a bare client's
list of the same COUNT WorkflowSchedules (median of three, before and after the restarts), and
the operator's CPU and memory (resident, and its high-water mark), after the registration and
after each restart. It restarts twice: with kopf's own defaults (every event handed to kopf at
once, a worker for every schedule, the first list in one request), the baseline, then with
wfclock's defaults (at most `WFCLOCK_EVENTS_IN_FLIGHT=128` events of a watch stream in kopf's
hands, the rest waiting compressed, lists of 500; `controller/backpressure.py`).
`BENCH_RESTART_VARIANTS=kopf,wfclock,workers-256,in-flight-1000` adds kopf's per-object worker
bound of 256 (`WFCLOCK_OBJECT_WORKERS`, off by default) without the gate, and the gate at 1,000.
Usage: python bench/restart_cost.py [COUNT=2000]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _cluster import (
    NAMESPACE,
    api_requests,
    cpu_seconds,
    operator,
    peak_rss_mib,
    rss_mib,
    schedule,
    stack,
    wait_for,
)
from kubernetes import client
from operator_apply import create_all, registered, statuses_scheduled
from wfclock.db.store import engine_for

GROUP = ("wfclock.dev", "v1alpha1")
# None of these fires while the benchmark runs (it avoids 03:00-09:30 UTC and Sundays' 06:00).
CRONS = ["0 3 * * *", "30 9 * * 1-5", "0 6 * * 0", "15 4 1 * *"]
# Written by kube-controller-manager and the API server themselves (leader election, endpoints).
PLANE_OWN = ("leases", "endpoints", "endpointslices")
WRITES = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION")


def trigger(i: int, base: datetime) -> dict:
    if i % 2:
        return {"type": "recurring", "cron": CRONS[i % len(CRONS)], "timezone": "UTC"}
    return {"type": "schedule", "runAt": (base + timedelta(seconds=i)).isoformat()}


def db_counters(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return dict(zip(("transactions", "inserted", "updated", "deleted"), row, strict=True))


def writes(counts) -> dict:
    return {k: v for k, v in counts.items() if k[0] in WRITES and v}


def bare_list(api) -> float:
    start = time.perf_counter()
    response = client.CustomObjectsApi(api).list_namespaced_custom_object(
        *GROUP, NAMESPACE, "workflowschedules", _preload_content=False
    )
    items = json.loads(response.data)["items"]
    took = time.perf_counter() - start
    assert items
    return took


def queued(port: int) -> float:
    url = f"http://127.0.0.1:{port}/metrics?name[]=wfclock_one_time_releases_queued"
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        if line.startswith("wfclock_one_time_releases_queued "):
            return float(line.split()[1])
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet(api, pid: int, seconds: float = 4) -> None:
    """Waits until the API server sees no write and the operator uses under a tenth of a core
    for `seconds` (every schedule is resumed: a resume that writes nothing still uses CPU)."""
    last, cpu = writes(api_requests(api)), cpu_seconds(pid)
    while True:
        time.sleep(seconds)
        now, used = writes(api_requests(api)), cpu_seconds(pid)
        if now == last and used - cpu < seconds / 10:
            return
        last, cpu = now, used


# The operator's settings for each restart (Settings.events_in_flight, object_workers,
# list_chunk_size): kopf's own defaults are the baseline.
VARIANTS = {
    "kopf": (
        "kopf's defaults (every event to kopf at once, a worker each, one list)",
        {
            "WFCLOCK_EVENTS_IN_FLIGHT": "0",
            "WFCLOCK_OBJECT_WORKERS": "0",
            "WFCLOCK_LIST_CHUNK_SIZE": "0",
        },
    ),
    "wfclock": (
        "wfclock's defaults (128 events in flight, the rest waiting compressed; lists of 500)",
        {
            "WFCLOCK_EVENTS_IN_FLIGHT": "128",
            "WFCLOCK_OBJECT_WORKERS": "0",
            "WFCLOCK_LIST_CHUNK_SIZE": "500",
        },
    ),
    "workers-256": (
        "kopf's worker bound (256 workers, lists of 500, no gate)",
        {
            "WFCLOCK_EVENTS_IN_FLIGHT": "0",
            "WFCLOCK_OBJECT_WORKERS": "256",
            "WFCLOCK_LIST_CHUNK_SIZE": "500",
        },
    ),
}


def variant(name: str) -> tuple[str, dict]:
    """One of VARIANTS, or `in-flight-<N>`: wfclock's defaults with N events in flight."""
    if name.startswith("in-flight-"):
        n = name.removeprefix("in-flight-")
        return f"{n} events in flight, lists of 500", {
            **VARIANTS["wfclock"][1],
            "WFCLOCK_EVENTS_IN_FLIGHT": n,
        }
    return VARIANTS[name]


def restart(plane, api, url: str, one_time: int, **env: str) -> dict:
    """Starts the operator again over the registered schedules; what its resume cost."""
    time.sleep(12)  # the database's statistics are flushed by idle backends
    api_before, db_before = api_requests(api), db_counters(url)
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "operator-restarted.log"
    spawned = time.perf_counter()
    with operator(plane, url, log, WFCLOCK_METRICS_PORT=str(port), **env) as proc:
        ready_at = up_at = None
        while ready_at is None:
            try:
                waiting = queued(port)
                up_at = up_at or time.perf_counter()
                if waiting >= one_time:
                    ready_at = time.perf_counter()
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        quiet(api, proc.pid)
        settled = time.perf_counter() - spawned
        cpu, rss, peak = cpu_seconds(proc.pid), rss_mib(proc.pid), peak_rss_mib(proc.pid)
        time.sleep(12)
        api_delta = writes(api_requests(api))
        db_after = db_counters(url)
    api_delta = {k: v - api_before.get(k, 0) for k, v in api_delta.items()}
    return {
        "api": {k: v for k, v in api_delta.items() if v},
        "db": {k: db_after[k] - db_before[k] for k in db_before},
        "ready": ready_at - spawned,
        "started": up_at - spawned,
        "settled": settled,
        "cpu": cpu,
        "rss": rss,
        "peak": peak,
    }


def report(what: str, r: dict, count: int, one_time: int, listed: float) -> None:
    own = {k: v for k, v in r["api"].items() if k[1] in PLANE_OWN}
    ours = {k: v for k, v in r["api"].items() if k[1] not in PLANE_OWN}
    db = r["db"]
    print(f"{what}:")
    print(f"  restart, API writes: {sum(ours.values()):.0f} (goal 0)")
    for (verb, resource, sub), n in sorted(ours.items(), key=lambda kv: -kv[1]):
        print(f"    {n:7.0f} {verb} {resource}{'/' + sub if sub else ''}")
    print(
        "    (the control plane's own lease and endpoint writes meanwhile, not counted: "
        + ", ".join(f"{n:.0f} {verb} {res}" for (verb, res, _), n in own.items())
        + ")"
    )
    print(
        f"  restart, database: {db['inserted']} rows inserted, {db['updated']} updated, "
        f"{db['deleted']} deleted (goal 0); {db['transactions']} transactions (reads included)"
    )
    print(
        f"  restart -> ready (all {one_time} one-time releases queued): {r['ready']:.2f} s "
        f"(ratio {r['ready'] / listed:.1f}, goal <= 2); quiet after {r['settled']:.1f} s"
    )
    print(
        f"    of which the process start (Python, kopf, the startup handler; spawn -> metrics "
        f"endpoint up): {r['started']:.2f} s; after it: {r['ready'] - r['started']:.2f} s "
        f"(ratio {(r['ready'] - r['started']) / listed:.1f})"
    )
    print(
        f"  operator after the restart: CPU {r['cpu']:.1f} s, RSS {r['rss']:.0f} MiB "
        f"(high-water mark {r['peak']:.0f} MiB)"
    )


def main(count: int) -> None:
    load_before = os.getloadavg()
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    one_time = (count + 1) // 2
    env = {"WFCLOCK_ACCOUNTING_INTERVAL_SECONDS": "3600", "WFCLOCK_RESYNC_INTERVAL_SECONDS": "3600"}
    with stack() as (plane, api, url):
        objects = client.CustomObjectsApi(api)
        engine = engine_for(url)
        log = Path(tempfile.mkdtemp()) / "operator.log"
        start = time.perf_counter()
        with operator(plane, url, log, **env) as first:
            create_all(
                lambda i: objects.create_namespaced_custom_object(
                    *GROUP, NAMESPACE, "workflowschedules", schedule(f"s-{i}", trigger(i, base))
                ),
                count,
            )
            wait_for(lambda: registered(engine) >= count, 7200, interval=1)
            wait_for(lambda: statuses_scheduled(objects) >= count, 600, interval=1)
            registering = time.perf_counter() - start
            quiet(api, first.pid)
            registered_rss, registered_peak = rss_mib(first.pid), peak_rss_mib(first.pid)
        engine.dispose()
        lists = [bare_list(api) for _ in range(3)]
        names = os.environ.get("BENCH_RESTART_VARIANTS", "kopf,wfclock").split(",")
        results = {}
        profile = os.environ.get("BENCH_PROFILE")
        for name in names:
            if profile:  # each restart's profile apart: <file>.<variant>
                os.environ["BENCH_PROFILE"] = f"{profile}.{name}"
            results[name] = restart(plane, api, url, one_time, **env, **variant(name)[1])
        lists += [bare_list(api) for _ in range(3)]
    listed = statistics.median(lists)
    print(
        f"schedules: {count} ({one_time} one-time, {count - one_time} recurring); registered "
        f"in {registering:.0f} s; load average before {load_before[0]:.1f}, "
        f"after {os.getloadavg()[0]:.1f}"
    )
    print(f"bare client, list of {count} WorkflowSchedules: median {listed:.2f} s")
    print(
        f"registration: {count / registering:.0f} schedules/s; operator RSS after it "
        f"{registered_rss:.0f} MiB (high-water mark {registered_peak:.0f} MiB, goal <= 300)"
    )
    for name, result in results.items():
        report(variant(name)[0], result, count, one_time, listed)
    base = results[names[0]]
    for name in names[1:]:
        r = results[name]
        print(
            f"{name} / {names[0]}: high-water mark {r['peak'] / base['peak']:.2f}, "
            f"RSS {r['rss'] / base['rss']:.2f}, CPU {r['cpu'] / base['cpu']:.2f}, "
            f"quiet after {r['settled'] / base['settled']:.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_RESTART", 2000)))
