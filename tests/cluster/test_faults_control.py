"""Fault scenarios against the operator and the control plane (`make faults`; not part of
`make test`): the operator killed with SIGKILL every few seconds during a stream of changes, the
API server and etcd restarted during fires, the active replica of two killed at the `runAt` of
one-time schedules, and a burst of recurring fires in one minute. Each ends with the independent
accounting (lost 0, duplicated 0, unexpected 0) and prints its line; docs/reliability.md keeps
the table. Sizes are environment variables, so a smaller machine can run a smaller form."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from kubernetes import client, config
from wfclock.core.names import SCHEDULE_UID_LABEL
from wfclock.db.store import engine_for
from wfclock_devstack.accounting import Change, Report, account, describe
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.podrunner import PodRunner
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate, wait_until

from .conftest import CRD, Cluster, schedule_body
from .test_standby import LIFETIME, RESUMED, OperatorProcess, peers, standby_release

pytestmark = pytest.mark.faults

# Zones whose offset is a whole number of hours and does not change in the run (the accounting
# uses croniter, whose DST rules differ from the CronJob controller's).
ZONES = ["UTC", "Asia/Tokyo", "Africa/Nairobi", "America/Sao_Paulo"]
MARGIN = timedelta(seconds=15)
KILL_SCHEDULES = int(os.environ.get("WFCLOCK_FAULT_KILL_SCHEDULES", "1000"))
KILL_SECONDS = float(os.environ.get("WFCLOCK_FAULT_KILL_SECONDS", "180"))  # of kills and changes
RESTART_SCHEDULES = int(os.environ.get("WFCLOCK_FAULT_RESTART_SCHEDULES", "200"))
STANDBY_SCHEDULES = int(os.environ.get("WFCLOCK_FAULT_STANDBY_SCHEDULES", "100"))
BURST_SCHEDULES = int(os.environ.get("WFCLOCK_FAULT_BURST_SCHEDULES", "1000"))


def say(text: str) -> None:
    sys.__stderr__.write(f"\n{text}\n")  # past pytest's capture
    sys.__stderr__.flush()


def settle_and_account(
    scenario: str, database_url: str, histories, end: datetime, limit: float = 180
) -> Report:
    """Accounts every fire up to `end` once all are recorded (or `limit` seconds pass)."""
    deadline = time.monotonic() + limit
    while not (report := account(database_url, histories, end, MARGIN)).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    say(f"accounting [{scenario}]: {report.line()}")
    if not report.ok:
        say(describe(database_url, report))
    problems = report.lost + report.duplicated + report.unexpected
    assert report.ok, f"{report.line()}: {problems[:20]}"
    return report


def every_minute(zone: str) -> dict:
    return {"type": "recurring", "cron": "* * * * *", "timezone": zone}


def delivered_by(conn, minute: datetime) -> Counter:
    """How the fires of `minute` were delivered: by their Job, or made up by the operator."""
    return Counter(
        source if source in ("recovery", "catch-up") else "Job"
        for (source,) in conn.execute(
            "SELECT coalesce(source, '?') FROM workflow_schedule_fires WHERE scheduled_for = %s",
            (minute,),
        )
    )


class Schedules:
    """Creates, replaces and deletes schedules from many threads, keeping each one's history
    (what its spec became, and when the API server answered) for the accounting."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.histories: dict[uuid.UUID, list[Change]] = {}
        self.uids: dict[str, uuid.UUID] = {}
        self.live: dict[str, dict] = {}  # name -> last spec applied, for the schedules not deleted
        self._lock = threading.Lock()

    def _note(self, name: str, uid: uuid.UUID, spec: dict | None) -> None:
        with self._lock:
            self.uids[name] = uid
            self.histories.setdefault(uid, []).append(Change(datetime.now(UTC), spec))
            if spec is None:
                self.live.pop(name, None)
            else:
                self.live[name] = spec

    def create(self, name: str, trigger: dict, **spec) -> None:
        body = self.cluster.objects.create_namespaced_custom_object(
            "wfclock.dev",
            "v1alpha1",
            self.cluster.namespace,
            "workflowschedules",
            schedule_body(name, trigger, **spec),
        )
        self._note(name, uuid.UUID(body["metadata"]["uid"]), body["spec"])

    def replace_spec(self, name: str, spec: dict) -> None:
        """The whole spec, as `kubectl apply` of a new manifest (a merge patch from the last
        spec: no conflicts with the operator's status writes)."""
        body = self.cluster.patch(name, {"spec": merge_patch(self.live[name], spec)})
        self._note(name, uuid.UUID(body["metadata"]["uid"]), body["spec"])

    def delete(self, name: str) -> None:
        self.cluster.delete(name)
        self._note(name, self.uids[name], None)


def merge_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`."""
    patch: dict = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            patch[key] = merge_patch(old[key], value)
        elif old.get(key) != value:
            patch[key] = value
    return patch


def in_parallel(work, items, threads: int = 8) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


def wait_phases(cluster: Cluster, expected: dict[str, str], timeout: float, what: str) -> None:
    """Until every schedule in `expected` shows its phase for its current generation, and no
    other schedule is left (deleted ones are gone once the operator has finalized them)."""

    def behind() -> list[str]:
        items = {s["metadata"]["name"]: s for s in cluster.list()}
        found = [f"{name} not deleted" for name in set(items) - set(expected)]
        found += [f"{name} missing" for name in set(expected) - set(items)]
        for name, phase in expected.items():
            status = (items.get(name) or {}).get("status") or {}
            generation = (items.get(name) or {}).get("metadata", {}).get("generation")
            if (status.get("phase"), status.get("observedGeneration")) != (phase, generation):
                found.append(
                    f"{name}: {status.get('phase')} of generation "
                    f"{status.get('observedGeneration')}, expected {phase} of {generation}"
                )
        return found

    try:
        wait_until(lambda: not behind(), timeout, what, interval=2)
    except TimeoutError:
        found = behind()
        pytest.fail(f"{what}: {len(found)} schedules behind after {timeout:.0f} s: {found[:10]}")


class OperatorProc:
    """`python -m wfclock.controller` watching one namespace with the admin login, its output in
    one log (appended across restarts); killable with SIGKILL."""

    def __init__(self, kubeconfig, database_url: str, namespace: str, log, **env):
        self.log = log
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")},
            "KUBECONFIG": str(kubeconfig),
            "WFCLOCK_DATABASE_URL": database_url,
            "WFCLOCK_NAMESPACES": json.dumps([namespace]),
            "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "1",
            "WFCLOCK_EDITION": "enterprise",
            "WFCLOCK_METRICS_PORT": "0",
            "WFCLOCK_LAUNCHER_IMAGE": "wfclock:test",
            "WFCLOCK_DATABASE_SECRET_SOURCE": "",
            "WFCLOCK_ACCOUNTING_INTERVAL_SECONDS": "5",
            "WFCLOCK_LOG_LEVEL": "warning",
            **env,
        }
        self.process = None
        self.starts = 0

    def start(self) -> OperatorProc:
        self.env["WFCLOCK_HEALTH_PORT"] = str(free_port())
        self.process = spawn([sys.executable, "-m", "wfclock.controller"], self.log, env=self.env)
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL to the whole process group: no handler, no cleanup, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        terminate(self.process)


def on_the_node(operator_env: dict) -> dict:
    """What makes the launcher pods of an operator on the session's plane run on its node."""
    keys = ("WFCLOCK_LAUNCHER_IMAGE", "WFCLOCK_LAUNCHER_IMAGE_PULL_POLICY")
    return {k: operator_env[k] for k in (*keys, "WFCLOCK_LAUNCHER_DATABASE_HOST")}


def database_secret(core: client.CoreV1Api, namespace: str, database_url: str) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "wfclock-database"},
            "data": {"url": base64.b64encode(database_url.encode()).decode()},
        },
    )


def quiet_daily(rng: random.Random, zone: str, now: datetime) -> dict:
    """A daily cron in `zone` whose fire is 3 to 20 hours away: it never fires in the run."""
    local = (now + timedelta(hours=rng.randint(3, 20))).astimezone(ZoneInfo(zone))
    return {
        "type": "recurring",
        "cron": f"{rng.randint(0, 59)} {local.hour} * * *",
        "timezone": zone,
    }


def far_one_time(rng: random.Random, now: datetime) -> dict:
    run_at = (now + timedelta(days=1, minutes=rng.randint(0, 600))).replace(microsecond=0)
    return {"type": "schedule", "runAt": run_at.isoformat().replace("+00:00", "Z")}


# --- 1. the operator killed with SIGKILL every few seconds during a stream of changes ----------


@pytest.mark.timeout(1200)
def test_operator_killed_every_few_seconds_while_schedules_change_keeps_one_child_each(
    control_plane, crds, api, namespace, database_url, cluster, tmp_path, operator_env
):
    """While `KILL_SCHEDULES` schedules are created, edited (cron, zone, type), paused, resumed
    and deleted for `KILL_SECONDS`, the operator is started and killed with SIGKILL every 2-6 s
    (a child made, a status written or a finalizer removed may each be cut off); 8 every-minute
    schedules fire through it all. Once one operator stays up: exactly one child per live
    schedule, no orphan, every last change in the child and the status, and every fire once."""
    rng = random.Random(13)
    database_secret(client.CoreV1Api(api), namespace, database_url)
    operator = OperatorProc(
        control_plane.kubeconfig,
        database_url,
        namespace,
        tmp_path / "operator.log",
        WFCLOCK_RESYNC_INTERVAL_SECONDS="30",
        **on_the_node(operator_env),
    )
    schedules = Schedules(cluster)
    operator.start()
    for i in range(8):  # the witnesses: never edited, firing every minute through the kills
        schedules.create(f"w{i}", every_minute(ZONES[i % len(ZONES)]), startingDeadlineSeconds=300)
    wait_phases(cluster, {f"w{i}": "Scheduled" for i in range(8)}, 120, "the witnesses")

    stop_killing = threading.Event()
    kills = []

    def kill_loop():
        while not stop_killing.is_set():
            if operator.process.poll() is not None:
                operator.start()
            stop_killing.wait(rng.uniform(2, 6))
            operator.kill()
            kills.append(time.monotonic())
        operator.kill()

    killer = threading.Thread(target=kill_loop, name="killer", daemon=True)
    started = time.monotonic()
    killer.start()
    try:
        now = datetime.now(UTC)
        names = [f"c{i:04d}" for i in range(KILL_SCHEDULES)]
        plans = {n: random.Random(n) for n in names}  # each schedule's own stream of choices

        def first(name):
            r = plans[name]
            if r.random() < 0.15:
                schedules.create(name, far_one_time(r, now))
            else:
                schedules.create(name, quiet_daily(r, r.choice(ZONES), now))

        def change(name, final: bool):
            r, spec = plans[name], dict(schedules.live[name])
            roll = r.random()
            if final and roll < 0.15:
                schedules.delete(name)
                return
            if roll < 0.35:
                spec["trigger"] = quiet_daily(r, r.choice(ZONES), now)  # cron and zone edit
            elif roll < 0.5:
                spec["trigger"] = (
                    far_one_time(r, now)
                    if spec["trigger"]["type"] == "recurring"
                    else quiet_daily(r, r.choice(ZONES), now)
                )  # type switch
            elif roll < 0.8:
                spec["paused"] = not spec.get("paused", False)
            else:
                return
            schedules.replace_spec(name, spec)

        in_parallel(first, names)
        in_parallel(lambda n: change(n, final=False), names)
        while time.monotonic() - started < KILL_SECONDS:
            in_parallel(lambda n: change(n, final=False), rng.sample(names, len(names) // 4))
        in_parallel(lambda n: change(n, final=True), names)
        churned = time.monotonic() - started
    finally:
        stop_killing.set()
        killer.join(30)

    say(f"kill loop: {len(kills)} SIGKILLs over {churned:.0f} s of changes; one operator now")
    operator.start()  # one that stays up
    try:
        expected_phases = {
            name: "Paused" if spec.get("paused") else "Scheduled"
            for name, spec in schedules.live.items()
        }
        wait_phases(cluster, expected_phases, 420, "every live schedule's last change")
        recovered = time.monotonic() - started - churned
        check_children(cluster, schedules)
        end = datetime.now(UTC)
        time.sleep(45)  # the last minute's fires
        changes = sum(len(h) for h in schedules.histories.values())
        say(
            f"operator kill loop: {len(names)} schedules, {changes} changes in {churned:.0f} s, "
            f"{len(kills)} SIGKILLs ({operator.starts} starts); converged {recovered:.0f} s "
            f"after the last change, {len(schedules.live)} live"
        )
        report = settle_and_account("operator SIGKILL loop", database_url, schedules.histories, end)
        assert report.expected >= 8 * 3 and report.launched == report.expected, report.line()
    finally:
        operator.stop()


def check_children(cluster: Cluster, schedules: Schedules) -> None:
    """Exactly one child per live schedule, as its last spec says; none for anything else."""

    def by_uid(items):
        found: dict[str, list] = {}
        for item in items:
            found.setdefault((item.metadata.labels or {}).get(SCHEDULE_UID_LABEL), []).append(item)
        return found

    live_uids = {str(schedules.uids[name]): name for name in schedules.live}

    def problems() -> list[str]:
        found = []
        statuses = {s["metadata"]["name"]: s.get("status") or {} for s in cluster.list()}
        cronjobs = by_uid(c for c in cluster.cronjobs() if c.metadata.deletion_timestamp is None)
        one_time = by_uid(
            j for j in cluster.jobs("one-time") if j.metadata.deletion_timestamp is None
        )
        for uid in set(cronjobs) | set(one_time):
            if uid not in live_uids:
                found.append(f"orphan child of {uid}")
        for uid, name in live_uids.items():
            spec = schedules.live[name]
            paused = bool(spec.get("paused"))
            status = statuses.get(name, {})
            mine_c, mine_j = cronjobs.get(uid, []), one_time.get(uid, [])
            if spec["trigger"]["type"] == "recurring":
                if len(mine_c) != 1 or mine_j:
                    found.append(f"{name}: {len(mine_c)} CronJobs, {len(mine_j)} one-time Jobs")
                    continue
                child = mine_c[0]
                if (child.spec.schedule, child.spec.time_zone, bool(child.spec.suspend)) != (
                    spec["trigger"]["cron"],
                    spec["trigger"]["timezone"],
                    paused,
                ):
                    found.append(
                        f"{name}: CronJob {child.spec.schedule} {child.spec.time_zone} "
                        f"suspend={child.spec.suspend}, spec {spec['trigger']} paused={paused}"
                    )
                if status.get("registered", {}).get("name") != child.metadata.name:
                    found.append(f"{name}: status names {status.get('registered')}")
            else:
                if len(mine_j) != 1 or mine_c:
                    found.append(f"{name}: {len(mine_c)} CronJobs, {len(mine_j)} one-time Jobs")
                    continue
                child = mine_j[0]
                run_at = datetime.fromisoformat(spec["trigger"]["runAt"].replace("Z", "+00:00"))
                if child.spec.suspend is not True or not child.metadata.name.endswith(
                    f"-{int(run_at.timestamp()) // 60}"
                ):
                    found.append(f"{name}: Job {child.metadata.name} suspend={child.spec.suspend}")
                if status.get("registered", {}).get("name") != child.metadata.name:
                    found.append(f"{name}: status names {status.get('registered')}")
                if status.get("nextFireAt") != run_at.strftime("%Y-%m-%dT%H:%M:%SZ") and not paused:
                    found.append(f"{name}: status nextFireAt {status.get('nextFireAt')}")
        return found

    try:
        wait_until(lambda: not problems(), 120, "one child per live schedule", interval=3)
    except TimeoutError:
        found = problems()
        pytest.fail(f"{len(found)} problems with children: {found[:20]}")


# --- 2. kube-apiserver restarted during a minute of fires, and etcd restarted once -----------


@pytest.fixture
def own_plane(postgres):
    """A control plane of the test's own (its API server and etcd are restarted), with the
    CRD, the admission policy, a tenant namespace and a pod runner."""
    plane = ControlPlane().start()
    try:
        plane.install_crds(CRD.parent)
        admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
        client.CoreV1Api(admin).create_namespace(
            {"metadata": {"name": "acme", "labels": {"wfclock.dev/tenant": "acme"}}}
        )
        plane.wait_schedules_admitted("acme", "acme")
        runner = PodRunner(admin, time_limit=120).start()
        try:
            yield plane, admin
        finally:
            runner.stop(drop_queued=True)  # late Jobs' pods of fires already accounted
    finally:
        plane.remove()


@pytest.mark.timeout(900)
def test_api_server_and_etcd_restarted_during_fires_lose_no_fire(own_plane, database_url):
    """`RESTART_SCHEDULES` schedules firing in the same two minutes: kube-apiserver stopped 3 s
    before the first and started again 8 s later (its fires are created late by the CronJob
    controller or launched by the operator's sweep); etcd stopped 3 s before the second and
    started again 5 s later. Every fire once."""
    plane, admin = own_plane
    cluster = Cluster(admin, "acme")
    database_secret(cluster.core, "acme", database_url)
    operator = OperatorProc(
        plane.kubeconfig, database_url, "acme", plane.root / "logs" / "operator.log"
    ).start()
    try:
        schedules = Schedules(cluster)
        lead = timedelta(seconds=60 + RESTART_SCHEDULES // 5)  # time to register them all
        first = (datetime.now(UTC) + lead).replace(second=0, microsecond=0) + timedelta(minutes=1)
        second = first + timedelta(minutes=2)
        cron = f"{first.minute},{second.minute} * * * *"  # two minutes of fires, then quiet
        names = [f"m{i:03d}" for i in range(RESTART_SCHEDULES)]
        in_parallel(
            lambda n: schedules.create(
                n,
                {"type": "recurring", "cron": cron, "timezone": ZONES[int(n[1:]) % len(ZONES)]},
                startingDeadlineSeconds=300,
            ),
            names,
        )
        wait_phases(cluster, dict.fromkeys(names, "Scheduled"), 180, "registered")
        assert datetime.now(UTC) < first - timedelta(seconds=5), "registered too late"
        time.sleep((first - timedelta(seconds=3) - datetime.now(UTC)).total_seconds())
        api_back = plane.restart_apiserver(down=8)
        time.sleep(max(0.0, (second - timedelta(seconds=3) - datetime.now(UTC)).total_seconds()))
        etcd_back = plane.restart_etcd(down=5)
        end = second + timedelta(seconds=30)
        expected = 2 * RESTART_SCHEDULES

        def runs() -> int:
            with psycopg.connect(database_url) as conn:
                return conn.execute("SELECT count(*) FROM workflow_runs").fetchone()[0]

        wait_until(lambda: runs() >= expected, 360, "every fire of both minutes", interval=3)
        report = settle_and_account(
            "API server and etcd restarts", database_url, schedules.histories, end
        )
        figures = []
        with psycopg.connect(database_url) as conn:
            for minute in (first, second):
                (last,) = conn.execute(
                    "SELECT max(created_at) FROM workflow_runs WHERE payload->>'scheduledFor' = %s",
                    (minute.strftime("%Y-%m-%dT%H:%M:%SZ"),),
                ).fetchone()
                by_source = delivered_by(conn, minute)
                figures.append(
                    f"{minute:%H:%M} last run {(last - minute).total_seconds():.1f} s after it, "
                    f"delivered by {dict(by_source)}"
                )
        say(
            f"API server stopped {first:%H:%M}-3 s, ready again {api_back:.1f} s after the stop; "
            f"etcd stopped {second:%H:%M}-3 s, API ready {etcd_back:.1f} s after; "
            + "; ".join(figures)
        )
        assert report.expected == report.launched == expected, report.line()
    finally:
        operator.stop()
        engine_for(database_url).dispose()


# --- 3. two replicas, the active one killed at the runAt of one-time schedules ---------------


@pytest.fixture(scope="module")
def released(plane, postgres):
    with standby_release(plane, postgres, "standby_faults") as release:
        yield release


def test_active_replica_killed_at_the_run_at_of_one_time_schedules_each_fires_once(plane, released):
    """Two replicas peering (the chart's `standby.enabled`); `STANDBY_SCHEDULES` one-time
    schedules registered by the active one share a `runAt`, at which it is killed with SIGKILL:
    the standby takes over, rebuilds its release queue, and every fire runs exactly once."""
    url, admin = released
    cluster = Cluster(admin, "acme")
    active = OperatorProcess(plane, admin, url, "active", 100)
    standby = OperatorProcess(plane, admin, url, "standby", 50)
    try:
        wait_until(lambda: {"active", "standby"} <= set(peers(admin)), 60, "both peers")
        schedules = Schedules(cluster)
        run_at = (datetime.now(UTC) + timedelta(seconds=45)).replace(microsecond=0)
        trigger = {"type": "schedule", "runAt": run_at.isoformat().replace("+00:00", "Z")}
        names = [f"once-{i:03d}" for i in range(STANDBY_SCHEDULES)]
        in_parallel(lambda n: schedules.create(n, trigger), names)
        wait_phases(cluster, dict.fromkeys(names, "Scheduled"), 40, "registered before runAt")
        assert datetime.now(UTC) < run_at - timedelta(seconds=2), "registered too late"
        time.sleep((run_at - datetime.now(UTC)).total_seconds())
        os.killpg(active.process.pid, signal.SIGKILL)
        killed = datetime.now(UTC)
        active.process.wait(10)
        resumed = wait_until(
            lambda: standby.said_at(RESUMED, after=killed), 3 * LIFETIME, "the takeover"
        )
        try:
            wait_phases(cluster, dict.fromkeys(names, "Completed"), 240, "every one-time fire")
        except BaseException:
            with psycopg.connect(url) as conn:
                ledger = conn.execute(
                    "SELECT outcome, source, count(*) FROM workflow_schedule_fires GROUP BY 1, 2"
                ).fetchall()
                states = conn.execute(
                    "SELECT status, count(*) FROM workflow_schedules GROUP BY 1"
                ).fetchall()
            jobs = Counter(
                (j.spec.suspend, j.status.succeeded, j.status.failed, j.status.active)
                for j in cluster.jobs("one-time")
            )
            say(
                f"ledger {ledger}; state rows {states}; Jobs (suspend, succeeded, failed, "
                f"active) {dict(jobs)}; the standby's last warnings:"
            )
            lines = standby.log.read_text(errors="replace").splitlines()
            say("\n".join([line for line in lines if '"severity": "info"' not in line][-30:]))
            raise
        end = datetime.now(UTC)
        report = settle_and_account("active replica killed at runAt", url, schedules.histories, end)
        with psycopg.connect(url) as conn:
            runs, last = conn.execute(
                "SELECT count(*), max(created_at) FROM workflow_runs WHERE trigger_type = 'schedule'"
            ).fetchone()
            before_kill = conn.execute(
                "SELECT count(*) FROM workflow_runs WHERE trigger_type = 'schedule' "
                "AND created_at < %s",
                (killed,),
            ).fetchone()[0]
        say(
            f"standby resumed {(resumed - killed).total_seconds():.1f} s after SIGKILL at runAt; "
            f"{before_kill} runs before the kill; the last of {runs} runs "
            f"{(last - run_at).total_seconds():.1f} s after runAt"
        )
        assert report.launched == STANDBY_SCHEDULES and runs == STANDBY_SCHEDULES
    finally:
        terminate(active.process)
        terminate(standby.process)


# --- 4. a burst: recurring schedules all firing in the same minute ---------------------------


@pytest.mark.timeout(1800)
def test_a_burst_of_recurring_fires_in_one_minute_runs_each_once(
    control_plane, crds, api, namespace, database_url, cluster, tmp_path, operator_env, postgres
):
    """`BURST_SCHEDULES` hourly schedules, all at the same minute: every fire one run. Prints
    the time from the minute to the last run and the peak of Postgres connections."""
    database_secret(client.CoreV1Api(api), namespace, database_url)
    operator = OperatorProc(
        control_plane.kubeconfig,
        database_url,
        namespace,
        tmp_path / "operator.log",
        **on_the_node(operator_env),
    ).start()
    peak = Counter()
    done = threading.Event()

    def sample_connections():
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            while not done.is_set():
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                ).fetchone()
                peak["max"] = max(peak["max"], n)
                done.wait(0.1)

    sampler = threading.Thread(target=sample_connections, daemon=True)
    try:
        lead = timedelta(seconds=90 + BURST_SCHEDULES // 5)  # time to register them all
        minute = (datetime.now(UTC) + lead).replace(second=0, microsecond=0) + timedelta(minutes=1)
        schedules = Schedules(cluster)
        names = [f"b{i:04d}" for i in range(BURST_SCHEDULES)]
        in_parallel(
            lambda n: schedules.create(
                n,
                {
                    "type": "recurring",
                    "cron": f"{minute.minute} * * * *",
                    "timezone": ZONES[int(n[1:]) % len(ZONES)],
                },
            ),
            names,
        )
        registering = (minute - datetime.now(UTC)).total_seconds() - 10
        wait_phases(cluster, dict.fromkeys(names, "Scheduled"), registering, "registered")
        time.sleep(max(0.0, (minute - timedelta(seconds=5) - datetime.now(UTC)).total_seconds()))
        sampler.start()
        key = minute.strftime("%Y-%m-%dT%H:%M:%SZ")

        def runs() -> int:
            with psycopg.connect(database_url) as conn:
                return conn.execute(
                    "SELECT count(*) FROM workflow_runs WHERE payload->>'scheduledFor' = %s",
                    (key,),
                ).fetchone()[0]

        wait_until(lambda: runs() >= BURST_SCHEDULES, 900, "every fire of the burst", interval=3)
        done.set()
        end = minute + timedelta(seconds=30)
        report = settle_and_account("burst", database_url, schedules.histories, end)
        with psycopg.connect(database_url) as conn:
            last, first = conn.execute(
                "SELECT max(created_at), min(created_at) FROM workflow_runs "
                "WHERE payload->>'scheduledFor' = %s",
                (key,),
            ).fetchone()
            by_source = delivered_by(conn, minute)
        say(
            f"burst of {BURST_SCHEDULES} at {minute:%H:%M}: first run "
            f"{(first - minute).total_seconds():.1f} s, last run "
            f"{(last - minute).total_seconds():.1f} s after the minute; peak Postgres "
            f"connections {peak['max']}; delivered by {dict(by_source)}"
        )
        assert report.launched == BURST_SCHEDULES, report.line()
    finally:
        done.set()
        operator.stop()
