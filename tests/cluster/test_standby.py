"""Active and standby: the chart installed with `standby.enabled`, two real operator processes
(`python -m wfclock.controller`, the chart's ServiceAccount token) peering through the object the
chart creates. The active one is killed with SIGKILL; the standby takes over, rebuilds the
one-time release queue from the schedules and their state rows, and a one-time schedule due
after the kill fires exactly once."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client, config
from wfclock.db.migrate import upgrade
from wfclock.db.store import engine_for, list_fires, list_runs
from wfclock_devstack.podrunner import PodRunner
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate, wait_until

from .conftest import Cluster
from .test_chart import RELEASE_NS, _token_client, install_release

log = logging.getLogger("wfclock.tests")
PEERING = "wfclock"  # the chart's fullname for release "wfclock", which WFCLOCK_PEERING names
LIFETIME = 20  # the operator's default peering lifetime (WFCLOCK_PEERING_LIFETIME_SECONDS)
HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
RECONCILED = "Handler 'reconcile' succeeded"
RESUMED = "Resuming operations after the pause"


@contextlib.contextmanager
def standby_release(plane, postgres, database: str):
    """The chart installed with `standby.enabled` on a database of its own, and a pod runner for
    its fires; yields the database URL and an administrator's client."""
    url = postgres.create_database(database)
    upgrade(url)
    admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
    install_release(plane, admin, url, {"acme": "acme"}, "--set", "standby.enabled=true")
    runner = PodRunner(admin).start()
    try:
        yield url, admin
    finally:
        runner.stop()
        engine_for(url).dispose()


@pytest.fixture(scope="module")
def installed(plane, postgres):
    with standby_release(plane, postgres, "standby_e2e") as release:
        yield release


class OperatorProcess:
    """`python -m wfclock.controller` as the chart's Deployment runs it, with its own log."""

    def __init__(self, plane, admin, url, role: str, priority: int):
        self.log = plane.root / "logs" / f"operator-{role}.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")},
            "KUBECONFIG": str(_token_client(plane, admin)),
            "POD_ID": role,  # kopf's identity in the peering object
            "WFCLOCK_DATABASE_URL": url,
            "WFCLOCK_DATABASE_SECRET_SOURCE": f"{RELEASE_NS}/wfclock-database",
            "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "1",
            "WFCLOCK_METRICS_PORT": "0",
            "WFCLOCK_HEALTH_PORT": str(free_port()),
            "WFCLOCK_PEERING": PEERING,
            "WFCLOCK_PRIORITY": str(priority),
        }
        self.process = spawn([sys.executable, "-m", "wfclock.controller"], self.log, env=env)

    def said_at(self, text: str, after: datetime | None = None) -> datetime | None:
        """When the operator first logged a message containing `text` (kopf's JSON lines), at or
        after `after` when given (a standby may have resumed and paused once at its start)."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        for line in lines:
            record = json.loads(line) if line.startswith("{") else {}
            if text in record.get("message", ""):
                at = datetime.fromisoformat(record["timestamp"]).astimezone(UTC)
                if after is None or at >= after:
                    return at
        return None

    def said(self, text: str) -> bool:
        return self.said_at(text) is not None


def peers(admin) -> dict:
    peering = client.CustomObjectsApi(admin).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", PEERING
    )
    return peering.get("status") or {}


def test_the_standby_takes_over_when_the_active_operator_is_killed(plane, installed):
    url, admin = installed
    cluster = Cluster(admin, "acme")
    engine = engine_for(url)
    assert client.CustomObjectsApi(admin).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", PEERING
    ), "the chart creates the peering object WFCLOCK_PEERING names"

    active = OperatorProcess(plane, admin, url, "active", 100)
    standby = None
    try:
        cluster.apply("before", HOURLY)
        cluster.wait_status("before", lambda s: s.get("phase") == "Scheduled", timeout=60)
        standby = OperatorProcess(plane, admin, url, "standby", 50)
        wait_until(lambda: {"active", "standby"} <= set(peers(admin)), 60, "both peers")

        # Registered by the active operator, due after it is killed.
        run_at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
        cluster.apply("due-after-kill", {"type": "schedule", "runAt": run_at.isoformat()})
        cluster.wait_status("due-after-kill", lambda s: s.get("phase") == "Scheduled")
        (job,) = cluster.jobs("one-time")
        assert job.spec.suspend is True
        assert active.said(RECONCILED) and not standby.said(RECONCILED), "one active, one paused"

        os.killpg(active.process.pid, signal.SIGKILL)
        killed = datetime.now(UTC)
        active.process.wait(10)
        assert killed < run_at
        cluster.apply("after-kill", HOURLY)
        resumed = wait_until(
            lambda: standby.said_at(RESUMED, after=killed), 3 * LIFETIME, "the takeover"
        )
        cluster.wait_status("after-kill", lambda s: s.get("phase") == "Scheduled", timeout=30)
        reconciled = standby.said_at(RECONCILED)
        takeover = (resumed - killed).total_seconds()
        first = (reconciled - killed).total_seconds()
        log.info("standby resumed %.1fs after SIGKILL, first reconcile at %.1fs", takeover, first)
        print(f"\ntakeover: resumed {takeover:.1f}s after SIGKILL, first reconcile at {first:.1f}s")
        assert takeover <= LIFETIME + 2

        cluster.wait_status("due-after-kill", lambda s: s.get("phase") == "Completed", timeout=60)
        cluster.wait_job_finished(job.metadata.name, timeout=30)
        runs = [r for r in list_runs(engine) if r["trigger_type"] == "schedule"]
        (fire,) = [f for f in list_fires(engine) if f["source"] == job.metadata.name]
        assert len(runs) == 1 and fire["attempts"] == 1 and fire["outcome"] == "launched"
        assert runs[0]["payload"]["scheduledFor"] == run_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        terminate(active.process)
        if standby:
            terminate(standby.process)
        engine.dispose()
