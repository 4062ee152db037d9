"""Fault scenarios on the data side (`make faults`): the launcher's clock ahead of and behind the
database's, launchers that hang on a database that never answers, and launcher pods that never
start. Each ends with the independent accounting (lost 0, duplicated 0, unexpected 0) and
prints its line; docs/reliability.md keeps the table."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from kubernetes import client, config
from wfclock_devstack.accounting import Change
from wfclock_devstack.podrunner import PodRunner

from .conftest import CRD
from .test_faults import ENV, ZONES, seconds_to_account, settle_and_account

# These faults are made in the launcher's process (its clock, pods held back), which the pod
# runner can do and a container on the node cannot: a control plane of the module's own, without
# a node, where the pod runner plays the kubelet.


@pytest.fixture(scope="module")
def control_plane(plane):
    return plane


@pytest.fixture(scope="module")
def api(control_plane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="module")
def crds(control_plane, api):
    control_plane.install_crds(CRD.parent)
    return CRD


@pytest.fixture(scope="module")
def pod_runner(api):
    runner = PodRunner(api, time_limit=120).start()
    yield runner
    runner.stop()


@pytest.fixture
def operator_env(database_url):
    return {
        "WFCLOCK_DATABASE_URL": database_url,
        "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "5",
        "WFCLOCK_EDITION": "enterprise",
        "WFCLOCK_METRICS_PORT": "0",
        "WFCLOCK_LAUNCHER_IMAGE": "wfclock:test",
        "WFCLOCK_DATABASE_SECRET_SOURCE": "",
    }


pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]


def every_minute(cluster, histories, prefix: str, **spec) -> None:
    for i, zone in enumerate(ZONES):
        body = cluster.apply(
            f"{prefix}-{i}",
            {"type": "recurring", "cron": "* * * * *", "timezone": zone},
            **spec,
        )
        histories[uuid.UUID(body["metadata"]["uid"])] = [Change(datetime.now(UTC), body["spec"])]


def one_time(cluster, histories, name: str, run_at: datetime, **spec) -> None:
    body = cluster.apply(name, {"type": "schedule", "runAt": run_at.isoformat()}, **spec)
    histories[uuid.UUID(body["metadata"]["uid"])] = [Change(datetime.now(UTC), body["spec"])]


def all_scheduled(cluster) -> None:
    for item in cluster.list():
        cluster.wait_status(item["metadata"]["name"], lambda s: s.get("phase") == "Scheduled")


def next_minute(second: int = 0) -> datetime:
    now = datetime.now(UTC)
    return (now + timedelta(minutes=1)).replace(second=second, microsecond=0)


def ledger(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT f.scheduled_for, f.outcome, f.source, r.payload->>'firedAt' "
            "FROM workflow_schedule_fires f LEFT JOIN workflow_runs r USING (run_id)"
        ).fetchall()


def report_line(scenario: str, report, recovered: float | None = None) -> None:
    after = "" if recovered is None else f"; accounted {recovered:.0f}s after the fault ended"
    sys.__stderr__.write(f"{scenario}: {report.line()}{after}\n")  # past the capture


# --- the launcher's clock ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def faketime() -> str:
    """libfaketime's LD_PRELOAD library (Debian's package, installed when missing)."""
    script = ROOT / "scripts" / "ensure-faketime.sh"
    return subprocess.run([script], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("offset", ["-90s", "+90s"])
def test_launcher_clock_off_by_90s_fires_each_once_and_none_early(
    start_operator, cluster, namespace, database_url, pod_runner, faketime, offset
):
    """Every launcher pod of the namespace runs with its wall clock 90 s behind or ahead of the
    database's (and the control plane's). The database's clock decides: every fire is
    delivered by its own Job exactly once (none refused as "not due", none left to the
    operator's recovery), and no run says it fired before its time."""
    pod_runner.extra_env[namespace] = {
        "LD_PRELOAD": faketime,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    try:
        start_operator(**ENV)
        histories: dict[uuid.UUID, list[Change]] = {}
        every_minute(cluster, histories, "skew", startingDeadlineSeconds=300)
        one_time(cluster, histories, "skew-once", next_minute(30) + timedelta(minutes=1))
        all_scheduled(cluster)
        time.sleep(
            max(0.0, (next_minute(10) + timedelta(minutes=2) - datetime.now(UTC)).total_seconds())
        )
        end = datetime.now(UTC)
        report = settle_and_account(database_url, histories, end)
    finally:
        pod_runner.extra_env.pop(namespace, None)
    report_line(f"launcher clock {offset}", report)
    rows = ledger(database_url)
    assert report.launched >= 4 * 2 + 1 and report.skipped == {}, report.line()
    for scheduled_for, outcome, source, fired_at in rows:
        assert outcome == "launched" and source not in ("recovery", "catch-up"), rows
        fired = datetime.fromisoformat(fired_at.replace("Z", "+00:00"))
        assert fired >= scheduled_for, f"the fire of {scheduled_for} ran early, at {fired}"
    skewed = [r for r in pod_runner.runs if r.namespace == namespace]
    assert skewed and all(r.exit_code == 0 for r in skewed), [r.output for r in skewed]


# --- launchers that hang, pods that never start ------------------------------------------------


class BlackHole:
    """A TCP address that accepts connections and never says a word (a dead proxy, a
    half-open firewall): a launcher connecting to it must give up, never hang its fire."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


def set_database_url(cluster, url: str) -> None:
    data = {"url": base64.b64encode(url.encode()).decode()}
    cluster.core.patch_namespaced_secret("wfclock-database", cluster.namespace, {"data": data})


def test_launchers_hanging_on_a_silent_database_lose_no_fire(
    start_operator, cluster, database_url, pod_runner
):
    """For three minutes the launchers' database address (the namespace's Secret) accepts
    connections and never answers: each launcher gives up within its budget (exit 75) and its
    Job retries; the operator's accounting launches the owed fires itself and reports the stuck
    Jobs; when the address is right again, the retries find their fires already launched."""
    hole = BlackHole()
    start_operator(**ENV)
    histories: dict[uuid.UUID, list[Change]] = {}
    every_minute(cluster, histories, "hang", startingDeadlineSeconds=300)
    one_time(cluster, histories, "hang-once", next_minute(30))
    all_scheduled(cluster)
    url = urlsplit(database_url)
    silent = url._replace(netloc=f"{url.username}@127.0.0.1:{hole.port}").geturl()
    set_database_url(cluster, silent)
    try:
        time.sleep(180)
        stuck = [
            item["metadata"]["name"]
            for item in cluster.list()
            if any(
                c.get("reason") == "FireStuck"
                for c in (item.get("status") or {}).get("conditions", [])
            )
        ]
    finally:
        set_database_url(cluster, database_url)
        hole_connections = len(hole.accepted)
        hole.close()
    back = datetime.now(UTC)
    recovered = seconds_to_account(database_url, histories, back)
    time.sleep(max(0.0, 70 - (datetime.now(UTC) - back).total_seconds()))  # a fire after it
    report = settle_and_account(database_url, histories, datetime.now(UTC))
    report_line("launchers hang on a silent database 180s", report, recovered)
    assert hole_connections >= 4, "no launcher reached the silent address"
    assert stuck, "no schedule reported its stuck Job"
    sources = {source for _, _, source, _ in ledger(database_url)}
    assert "recovery" in sources and report.launched >= 4 * 3, (sources, report.line())


def test_launcher_pods_that_never_start_lose_no_fire(
    start_operator, cluster, namespace, database_url, pod_runner
):
    """For three minutes no launcher pod of the namespace starts (held Pending, as on a node
    that cannot pull the image or schedule the pod): the Jobs stay active until their deadline,
    the operator launches the owed fires itself and reports the stuck Jobs; pods that start
    late find their fires already launched."""
    start_operator(**ENV)
    histories: dict[uuid.UUID, list[Change]] = {}
    every_minute(cluster, histories, "held", startingDeadlineSeconds=120)
    one_time(cluster, histories, "held-once", next_minute(30))
    all_scheduled(cluster)
    pod_runner.held.add(namespace)
    try:
        time.sleep(180)
    finally:
        pod_runner.held.discard(namespace)
    back = datetime.now(UTC)
    recovered = seconds_to_account(database_url, histories, back)
    time.sleep(max(0.0, 70 - (datetime.now(UTC) - back).total_seconds()))
    report = settle_and_account(database_url, histories, datetime.now(UTC))
    report_line("launcher pods never start 180s", report, recovered)
    rows = ledger(database_url)
    assert any(source == "recovery" for _, _, source, _ in rows), rows
    assert report.launched >= 4 * 3, report.line()
