"""Operator shards (docs/scale.md): two operator processes on one control plane, each scoped to
its own namespace (WFCLOCK_NAMESPACES, the chart's watchNamespaces), sharing one database. Each
registers only its own schedules, none is registered twice, and a schedule in a stopped shard's
namespace waits for that shard rather than being taken by the other."""

from __future__ import annotations

import json
import os
import sys
import uuid

from kubernetes import client
from wfclock.db.store import engine_for, get_schedule
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate, wait_until

from .conftest import RESTRICTED, Cluster

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}


def shard(control_plane, operator_env, namespace: str, log):
    env = {
        **os.environ,
        **operator_env,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "WFCLOCK_NAMESPACES": json.dumps([namespace]),
        "WFCLOCK_HEALTH_PORT": str(free_port()),  # kopf reads port 0 as 80
        "WFCLOCK_LOG_LEVEL": "warning",
    }
    return spawn([sys.executable, "-m", "wfclock.controller"], log, env=env)


def reasons(cluster: Cluster, name: str) -> list[str]:
    """The reasons of the Events wfclock posted for a schedule."""
    events = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return [e.reason for e in events if (e.source and e.source.component) == "wfclock-operator"]


def test_two_shards_each_register_only_their_own_namespace(
    control_plane, crds, api, namespace, operator_env, database_secret, database_url, tmp_path
):
    other = f"{namespace[:50]}-b"
    core = client.CoreV1Api(api)
    core.create_namespace(
        {"metadata": {"name": other, "labels": {"wfclock.dev/tenant": "acme", **RESTRICTED}}}
    )
    shards = {}
    try:
        a, b = Cluster(api, namespace), Cluster(api, other)
        engine = engine_for(database_url)
        shards[namespace] = shard(control_plane, operator_env, namespace, tmp_path / "a.log")
        shards[other] = shard(control_plane, operator_env, other, tmp_path / "b.log")
        uids = {}
        for cluster in (a, b):
            for i in range(3):
                body = cluster.apply(f"s-{i}", HOURLY)
                uids[(cluster.namespace, f"s-{i}")] = body["metadata"]["uid"]

        def all_scheduled() -> bool:
            return all(
                (c.status(f"s-{i}") or {}).get("phase") == "Scheduled"
                for c in (a, b)
                for i in range(3)
            )

        wait_until(all_scheduled, 120, "both shards to register their schedules")
        for cluster in (a, b):
            cronjobs = cluster.cronjobs()
            assert len(cronjobs) == 3, [c.metadata.name for c in cronjobs]
            for i in range(3):
                assert reasons(cluster, f"s-{i}") == ["Registered"]
                row = get_schedule(engine, uuid.UUID(uids[(cluster.namespace, f"s-{i}")]))
                assert row["namespace"] == cluster.namespace and row["status"] == "scheduled"

        # Shard b stops: a schedule in its namespace waits for it; shard a goes on with its own.
        terminate(shards.pop(other))
        waiting = b.apply("late", HOURLY)["metadata"]["uid"]
        a.apply("later", HOURLY)
        wait_until(lambda: (a.status("later") or {}).get("phase") == "Scheduled", 60, "shard a")
        assert get_schedule(engine, uuid.UUID(waiting)) is None
        assert not (b.status("late") or {}).get("phase")
        assert len(b.cronjobs()) == 3

        shards[other] = shard(control_plane, operator_env, other, tmp_path / "b2.log")
        wait_until(lambda: (b.status("late") or {}).get("phase") == "Scheduled", 60, "shard b")
        assert len(b.cronjobs()) == 4 and reasons(b, "late") == ["Registered"]
        # Its restart posted nothing for the schedules it had registered before (issue 17).
        assert all(reasons(b, f"s-{i}") == ["Registered"] for i in range(3))
    finally:
        for proc in shards.values():
            terminate(proc)
        core.delete_namespace(other)
