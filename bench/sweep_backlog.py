"""The accounting sweep under a backlog: COUNT every-minute schedules whose Jobs recorded none of
their fires of the last ten minutes (as in the soak, where the node completed a third of them).
Each owes about four fires within its 300 s deadline (launched by the sweep: all of them under
`catchUp`, the latest under `latest`, the older ones recorded as superseded) and about five
beyond it (recorded missed); every fifth has an active Job (a pod that never starts: there is no
node) for its oldest owed fire (the "still trying" path) and every tenth one for its latest (a
recovered fire whose Job is stuck), and each has KEPT suspended Jobs of other minutes (a kept
history's bytes in the Job list). One `accounting.sweep` pass is timed, with the API server's
requests it caused (`apiserver_request_total`, by verb and resource; the Events posted in the
background counted once they are out) and the database's transactions (`pg_stat_database`,
reads included: `xact_commit` + `xact_rollback`, as SQLAlchemy ends a read by a rollback).

The baseline is the operator before the sweep's change of issue 17, commit a013521
(`git archive a013521 operator`, extracted to a temporary folder, on PYTHONPATH; another commit
with BENCH_BASELINE_COMMIT), or BENCH_BASELINE_SOURCE=<dir> (a checkout's `operator/`):
each pass runs in a process of its own, on a fresh copy of the backlog in a namespace of its
own, on the same control plane and Postgres; the ratios are new/baseline. With BENCH_CPU_LOAD=N,
N busy processes run during both passes (the machine's cores taken by a soak's pods).
Usage: python bench/sweep_backlog.py [COUNT=500] [KEPT=2]
"""

from __future__ import annotations

import cProfile
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _cluster import api_requests, stack
from kubernetes import client, config
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.db.store import ScheduleState, engine_for, upsert_schedule

ROOT = Path(__file__).resolve().parents[1]
BACKLOG_MINUTES = 10
DEADLINE_SECONDS = 300
# Written by kube-controller-manager and the API server themselves, not by the sweep.
PLANE_OWN = ("leases", "endpoints", "endpointslices")


# --- the backlog ---------------------------------------------------------------------------------


def fire_job(namespace: str, name: str, uid: uuid.UUID, suspend: bool) -> dict:
    labels = {
        "app.kubernetes.io/managed-by": "wfclock",
        REGISTRATION_LABEL: "recurring-fire",
        SCHEDULE_UID_LABEL: str(uid),
    }
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "suspend": suspend,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "launcher", "image": "wfclock:bench", "command": ["true"]}
                    ],
                },
            },
        },
    }


def backlog(api, url: str, namespace: str, count: int, kept: int) -> datetime:
    """Writes the backlog into `namespace`; returns the publish time (the watermark)."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"wfclock.dev/tenant": "bench"}}}
    )
    # Fires owed from a minute boundary ten minutes back and a few seconds.
    now = datetime.now(UTC)
    published = now.replace(second=0, microsecond=0) - timedelta(minutes=BACKLOG_MINUTES)
    published += timedelta(seconds=1)
    minute = int(now.timestamp()) // 60
    engine = engine_for(url)
    jobs = []
    for i in range(count):
        uid = uuid.uuid4()
        name = f"s{i}"
        cronjob = f"{name}-cron"
        upsert_schedule(
            engine,
            ScheduleState(
                schedule_id=uid,
                tenant="bench",
                namespace=namespace,
                name=name,
                workflow_id=uuid.UUID("0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"),
                workflow_version=1,
                trigger_type="recurring",
                run_at=None,
                cron="* * * * *",
                timezone="UTC",
                status="scheduled",
                missed_fires="catchUp" if i % 2 else "latest",
                catch_up_window_seconds=DEADLINE_SECONDS,
                starting_deadline_seconds=DEADLINE_SECONDS,
                generation=1,
                registered_kind="CronJob",
                registered_name=cronjob,
                next_fire_at=None,
            ),
            published_at=published,
        )
        if i % 5 == 0:  # its oldest owed fire's Job is still trying (beyond the deadline)
            oldest = int(published.timestamp()) // 60 + 1
            jobs.append(fire_job(namespace, f"{cronjob}-{oldest}", uid, suspend=False))
        if i % 10 == 3:  # its latest owed fire's Job is stuck (the sweep launches the fire)
            jobs.append(fire_job(namespace, f"{cronjob}-{minute - 2}", uid, suspend=False))
        for k in range(kept):  # a kept history, of minutes the sweep does not look at
            jobs.append(fire_job(namespace, f"{cronjob}-{minute + 100 + k}", uid, suspend=True))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda body: batch.create_namespaced_job(namespace, body), jobs))
    engine.dispose()
    return published


def wait_quiet(api, seconds: float = 3, timeout: float = 180) -> None:
    """Until the API server has seen no write (but the control plane's own) for `seconds`: the
    Job controller has made the active Jobs' pods."""
    writes = ("POST", "PUT", "PATCH", "DELETE")

    def counted():
        return sum(
            v for k, v in api_requests(api).items() if k[0] in writes and k[1] not in PLANE_OWN
        )

    deadline, last, since = time.monotonic() + timeout, counted(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = counted()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return


# --- one pass, in a process of its own ----------------------------------------------------------


def transactions(url: str) -> int:
    """Transactions so far, committed or rolled back (SQLAlchemy ends a read by a rollback)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()[0]


def one_pass(namespace: str, url: str, kubeconfig: str) -> None:
    import wfclock
    from wfclock.controller import accounting
    from wfclock.controller.context import Context
    from wfclock.controller.kube import Kube
    from wfclock.settings import Settings

    api = config.new_client_from_config(config_file=kubeconfig)
    kube = Kube(api)
    engine = engine_for(url)
    ctx = Context(Settings(database_url=url, namespaces=[namespace]), engine, kube)
    time.sleep(1.5)  # the backends of the set-up have flushed their statistics
    requests, commits = api_requests(api), transactions(url)
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    start = time.perf_counter()
    if profile:
        profile.enable()
    changed = accounting.sweep(ctx)
    took = time.perf_counter() - start
    if profile:
        profile.disable()
        profile.dump_stats(f"{os.environ['BENCH_PROFILE']}.{namespace}")
    kube._notices.shutdown(wait=True)  # Events posted off the sweep's path are its cost too
    drained = time.perf_counter() - start
    engine.dispose()  # the sweep's backends exit, and flush their statistics
    time.sleep(1.5)
    after = api_requests(api)
    delta = {
        " ".join(filter(None, k)): after[k] - requests.get(k, 0)
        for k in after
        if after[k] - requests.get(k, 0) and k[1] not in PLANE_OWN and k[0] != "WATCH"
    }
    delta.pop("GET  ", None)  # the /metrics reads themselves
    print(
        json.dumps(
            {
                "code": str(Path(wfclock.__file__).parent),
                "seconds": took,
                "drained": drained,
                "changed": changed,
                "requests": delta,
                "transactions": transactions(url) - commits - 2,  # less the two reads' own
            }
        )
    )


# --- the run ------------------------------------------------------------------------------------


def outcomes(url: str, namespace: str) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT CASE WHEN f.outcome = 'launched' THEN 'launched'
                        WHEN strpos(f.reason, 'superseded') > 0 THEN 'superseded'
                        WHEN starts_with(f.reason, 'missed') THEN 'missed'
                        ELSE f.outcome END, count(*)
            FROM workflow_schedule_fires f JOIN workflow_schedules s USING (schedule_id)
            WHERE s.namespace = %s GROUP BY 1 ORDER BY 1
            """,
            (namespace,),
        ).fetchall()
    return dict(rows)


# The operator before the sweep's change of issue 17 (one GET and one Event a fire).
BASELINE_COMMIT = "a013521"


def baseline_source() -> tuple[str, str]:
    if os.environ.get("BENCH_BASELINE_SOURCE"):
        return os.environ["BENCH_BASELINE_SOURCE"], os.environ["BENCH_BASELINE_SOURCE"]
    commit = os.environ.get("BENCH_BASELINE_COMMIT", BASELINE_COMMIT)
    folder = tempfile.mkdtemp(prefix="sweep-baseline-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "operator"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return str(Path(folder) / "operator"), f"commit {commit}"


def busy(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def run_pass(plane, api, url: str, label: str, source: str, count: int, kept: int) -> dict:
    namespace = f"sweep-{label}"
    # The same point in the minute for both passes: as many fires owed either way.
    while not 10 <= datetime.now(UTC).second < 15:
        time.sleep(0.2)
    backlog(api, url, namespace, count, kept)
    wait_quiet(api)
    env = {**os.environ, "PYTHONPATH": source, "WFCLOCK_LOG_LEVEL": "warning"}
    out = subprocess.run(
        [sys.executable, __file__, "--pass", namespace, url, str(plane.kubeconfig)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["outcomes"] = outcomes(url, namespace)
    return result


def main(count: int, kept: int) -> None:
    source, described = baseline_source()
    new = str(ROOT / "operator")
    load = int(os.environ.get("BENCH_CPU_LOAD") or 0)
    load_before = os.getloadavg()[0]
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=busy, args=(stop,)) for _ in range(load)]
    with stack() as (plane, api, url):
        for p in burners:
            p.start()
        try:
            results = {
                "baseline": run_pass(plane, api, url, "baseline", source, count, kept),
                "new": run_pass(plane, api, url, "new", new, count, kept),
            }
        finally:
            stop.set()
            for p in burners:
                p.join()
    print(
        f"schedules: {count} every minute, {BACKLOG_MINUTES} minutes unrecorded, {kept} kept "
        f"Jobs each; busy processes {load}; load average before {load_before:.1f}, after "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"baseline: {described} ({source})")
    base = results["baseline"]
    for label, result in results.items():
        total = sum(result["requests"].values())
        print(
            f"{label}: sweep {result['seconds']:.2f} s ({count / result['seconds']:.0f} "
            f"schedules/s; Events drained after {result['drained']:.2f} s), "
            f"{total:.0f} API requests, {result['transactions']} transactions; "
            f"fires {result['outcomes']}"
        )
        for what, n in sorted(result["requests"].items(), key=lambda kv: -kv[1]):
            print(f"      {n:6.0f} {what}")
        if label != "baseline":
            print(
                f"  ratio {label}/baseline: time {result['seconds'] / base['seconds']:.2f}, "
                f"API requests {total / sum(base['requests'].values()):.2f}, transactions "
                f"{result['transactions'] / base['transactions']:.2f}"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pass"]:
        one_pass(*sys.argv[2:5])
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 500,
            int(sys.argv[2]) if len(sys.argv) > 2 else 2,
        )
