"""v1alpha1 and v1beta1 of WorkflowSchedule on the real API server: one schema, so an object
written in either version reads the same in the other, every field; the storage-version
migration (`wfclock crd migrate-storage`) moves what etcd holds; the operator, which watches
v1alpha1, keeps registering and firing schedules through it (docs/day-two.md)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

from kubernetes import client
from wfclock.db.store import engine_for, list_runs
from wfclock_devstack.processes import wait_until

from .conftest import WORKFLOW

GROUP, PLURAL, CRD_NAME = "wfclock.dev", "workflowschedules", "workflowschedules.wfclock.dev"
OTHER = {"v1alpha1": "v1beta1", "v1beta1": "v1alpha1"}

# Every field of the spec, between the two schedules (runAt and cron exclude each other), each
# set to a value that is not its default.
COMMON = {
    "tenant": "acme",
    "workflowId": WORKFLOW,
    "workflowVersion": 7,
    "paused": True,
    "pauseReason": "waiting for the quarter's close",
    "overlapPolicy": "BufferOne",
    "payloadSchemaMode": "pinned",
    "startingDeadlineSeconds": 600,
    "missedFires": "catchUp",
    "catchUpWindowSeconds": 7200,
    "successfulJobsHistoryLimit": 5,
    "failedJobsHistoryLimit": 4,
    "backoffLimit": 2,
}
ONE_TIME = {
    **COMMON,
    "trigger": {
        "type": "schedule",
        "runAt": "2031-03-30T01:30:00+01:00",
        "timezone": "Europe/Berlin",
    },
    "deleteAfterCompletionSeconds": 3600,
}
RECURRING = {
    **COMMON,
    "trigger": {
        "type": "recurring",
        "cron": "*/15 9-17 * * 1-5",
        "timezone": "Asia/Kolkata",
        "calendars": ["in-holidays", "freeze"],
        "activeFrom": "2026-12-01T00:00:00+05:30",
        "activeUntil": "2027-12-01T00:00:00+05:30",
        "maxFires": 500,
        "jitter": "90s",
        "dstPolicy": "RunOnceShiftMissing",
    },
}
STATUS = {
    "phase": "Paused",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Paused",
            "message": "paused by spec",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-11-26T20:00:00Z",
        }
    ],
    "registered": {"kind": "CronJob", "name": "wfs-abc"},
    "nextFireAt": "2026-11-27T03:45:00Z",
    "nextFires": [{"at": "2026-11-27T03:45:00Z", "local": "09:15 IST", "note": "no DST"}],
    "excludedFires": [
        {"at": "2027-01-26T03:45:00Z", "local": "09:15 IST", "reason": "calendar:in:Republic Day"}
    ],
    "calendars": ["in-holidays", "freeze"],
    "remainingFires": 499,
    "lastFireAt": "2026-11-26T11:45:00Z",
    "lastRunId": "0b5f1d5e-0000-4c43-9d2a-8c9b7f0a1e11",
    "lastResult": "launched",
    "lastError": "none",
    "pauseReason": "waiting for the quarter's close",
    "overlapPolicy": "BufferOne",
    "recentFires": [
        {
            "scheduledFor": "2026-11-26T11:45:00Z",
            "startedAt": "2026-11-26T11:45:01Z",
            "kind": "clock",
            "outcome": "skipped",
            "reason": "overlap",
            "runId": "0b5f1d5e-0000-4c43-9d2a-8c9b7f0a1e12",
            "runStatus": "running",
        }
    ],
    "lastSuccessfulFireAt": "2026-11-26T11:30:00Z",
    "lastSkippedFire": {
        "scheduledFor": "2026-11-26T11:45:00Z",
        "outcome": "skipped",
        "reason": "overlap",
    },
    "runNow": {
        "requestId": "cli-1",
        "outcome": "refused",
        "runId": "",
        "reason": "paused",
        "requestedBy": "alice",
    },
    "kopf": {"progress": {"reconcile": {"retries": 2}}},
}


def _paths(value, prefix="") -> set[str]:
    paths = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.add(f"{prefix}.{key}")
            paths |= _paths(inner, f"{prefix}.{key}")
    elif isinstance(value, list):
        for inner in value:
            paths |= _paths(inner, f"{prefix}[]")
    return paths


def _schema_paths(schema: dict, prefix="") -> set[str]:
    paths = set()
    for key, inner in (schema.get("properties") or {}).items():
        paths.add(f"{prefix}.{key}")
        paths |= _schema_paths(inner, f"{prefix}.{key}")
    if "items" in schema:
        paths |= _schema_paths(schema["items"], f"{prefix}[]")
    return paths


def stored_api_version(control_plane, namespace: str, name: str) -> str:
    """The apiVersion etcd holds the object in (the API server's default /registry prefix)."""
    key = f"/registry/{GROUP}/{PLURAL}/{namespace}/{name}".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{control_plane.etcd_port}/v3/kv/range",
        data=json.dumps({"key": base64.b64encode(key).decode()}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        (kv,) = json.load(response)["kvs"]
    return json.loads(base64.b64decode(kv["value"]))["apiVersion"]


def _set_storage(extensions, version: str) -> None:
    crd = extensions.read_custom_resource_definition(CRD_NAME)
    for served in crd.spec.versions:
        served.storage = served.name == version
    extensions.replace_custom_resource_definition(CRD_NAME, crd)


def test_both_versions_are_served_from_one_schema(api, crds):
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    versions = {v.name: api.sanitize_for_serialization(v) for v in crd.spec.versions}
    assert sorted(versions) == ["v1alpha1", "v1beta1"] and crd.spec.conversion.strategy == "None"
    assert all(v["served"] for v in versions.values())
    for key in ("schema", "additionalPrinterColumns", "subresources"):
        assert versions["v1alpha1"].get(key) == versions["v1beta1"].get(key), key


def test_every_field_written_in_one_version_reads_the_same_in_the_other(
    api, crds, control_plane, namespace
):
    objects = client.CustomObjectsApi(api)
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    schema = api.sanitize_for_serialization(crd.spec.versions[0].schema)["openAPIV3Schema"]
    # The two schedules set every field the schema has (a field added later must be added here).
    written = {"spec": [ONE_TIME, RECURRING], "status": [STATUS]}
    for part, bodies in written.items():
        missing = _schema_paths(schema["properties"][part]) - set().union(*map(_paths, bodies))
        missing = {p for p in missing if not p.startswith(".kopf.")}  # kopf's own, free-form
        assert not missing, f"set {part} fields {sorted(missing)} in this test's objects"

    names = []
    for name, spec, version in (
        ("one-time", ONE_TIME, "v1alpha1"),
        ("recurring", RECURRING, "v1beta1"),
    ):
        body = {
            "apiVersion": f"{GROUP}/{version}",
            "kind": "WorkflowSchedule",
            "metadata": {"name": name, "labels": {"team": "finance"}, "annotations": {"a": "b"}},
            "spec": copy.deepcopy(spec),
        }
        objects.create_namespaced_custom_object(GROUP, version, namespace, PLURAL, body)
        names.append(name)
        objects.patch_namespaced_custom_object_status(
            GROUP, version, namespace, PLURAL, name, {"status": STATUS}
        )
        mine = objects.get_namespaced_custom_object(GROUP, version, namespace, PLURAL, name)
        other = objects.get_namespaced_custom_object(GROUP, OTHER[version], namespace, PLURAL, name)
        assert other["apiVersion"] == f"{GROUP}/{OTHER[version]}"
        assert {**other, "apiVersion": mine["apiVersion"]} == mine
        assert other["spec"] == spec and other["status"] == STATUS
        assert other["metadata"]["labels"] == {"team": "finance"}
        # etcd holds the storage version whichever version wrote it.
        assert stored_api_version(control_plane, namespace, name) == f"{GROUP}/v1alpha1"

        # An edit in the other version, read back in the first: the same again.
        edited = {**other, "spec": {**other["spec"], "workflowVersion": 8, "paused": False}}
        del edited["spec"]["pauseReason"]
        objects.replace_namespaced_custom_object(
            GROUP, OTHER[version], namespace, PLURAL, name, edited
        )
        back = objects.get_namespaced_custom_object(GROUP, version, namespace, PLURAL, name)
        assert back["spec"] == edited["spec"] and back["status"] == STATUS

    for name in names:  # no operator here to take its finalizer off
        objects.patch_namespaced_custom_object(
            GROUP, "v1beta1", namespace, PLURAL, name, {"metadata": {"finalizers": None}}
        )
        objects.delete_namespaced_custom_object(GROUP, "v1beta1", namespace, PLURAL, name)


def test_the_storage_migration_moves_every_object_and_the_operator_keeps_firing(
    api, control_plane, start_operator, cluster, namespace, database_url
):
    start_operator()
    objects = client.CustomObjectsApi(api)
    extensions = client.ApiextensionsV1Api(api)
    hourly = cluster.apply("hourly", {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"})
    run_at = (datetime.now(UTC) + timedelta(seconds=25)).isoformat()
    cluster.apply("once", {"type": "schedule", "runAt": run_at})
    for name in ("hourly", "once"):
        cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled")
        assert stored_api_version(control_plane, namespace, name) == f"{GROUP}/v1alpha1"
    try:
        # The release that moves storage: its CRD, then the migration.
        _set_storage(extensions, "v1beta1")
        done = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "wfclock"), "crd", "migrate-storage"],
            env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "storage version v1beta1" in done.stdout, done.stdout
        crd = extensions.read_custom_resource_definition(CRD_NAME)
        assert crd.status.stored_versions == ["v1beta1"]
        for name in ("hourly", "once"):
            assert stored_api_version(control_plane, namespace, name) == f"{GROUP}/v1beta1"

        # The operator (watching v1alpha1) fires the one-time schedule once, as it was
        # registered before the move, and applies an edit made in v1beta1.
        (job,) = cluster.jobs("one-time")
        cluster.wait_job_finished(job.metadata.name, timeout=60)
        cluster.wait_status("once", lambda s: s.get("phase") == "Completed")
        (run,) = list_runs(engine_for(database_url))
        assert run["trigger_type"] == "schedule"
        scheduled_for = run["payload"]["scheduledFor"].replace("Z", "+00:00")
        scheduled = datetime.fromisoformat(scheduled_for) - datetime.fromisoformat(run_at)
        assert abs(scheduled) < timedelta(milliseconds=1)
        current = objects.get_namespaced_custom_object(
            GROUP, "v1beta1", namespace, PLURAL, "hourly"
        )
        current["spec"]["trigger"]["cron"] = "30 * * * *"
        edited = objects.replace_namespaced_custom_object(
            GROUP, "v1beta1", namespace, PLURAL, "hourly", current
        )
        assert edited["metadata"]["uid"] == hourly["metadata"]["uid"]
        wait_until(
            lambda: [c.spec.schedule for c in cluster.cronjobs()] == ["30 * * * *"],
            30,
            "the operator to apply the v1beta1 edit",
            interval=0.3,
        )
        cluster.wait_status(
            "hourly", lambda s: s.get("observedGeneration") == edited["metadata"]["generation"]
        )
    finally:
        # The session's other tests run on the file's CRD: storage back in v1alpha1.
        _set_storage(extensions, "v1alpha1")
