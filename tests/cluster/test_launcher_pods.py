"""Launcher pods on the real node: they pass the restricted Pod Security level the tenant
namespaces enforce, and one that cannot start (image missing, Secret gone) is reported on its
schedule, as the FiresHealthy condition and a Warning Event, not left silent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client.rest import ApiException
from wfclock.db.store import engine_for, list_runs

HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
FAST_ACCOUNTING = {"WFCLOCK_ACCOUNTING_INTERVAL_SECONDS": "2"}


def last_full_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def registered(cluster, name="hourly"):
    created = cluster.apply(name, HOURLY)
    cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled")
    (cronjob,) = cluster.cronjobs()
    return created, cronjob


def pod_from(cluster, cronjob, name: str) -> dict:
    template = cluster.batch.api_client.sanitize_for_serialization(
        cronjob.spec.job_template.spec.template
    )
    return {"metadata": {"name": name, "labels": {"probe": "psa"}}, "spec": template["spec"]}


def fires_condition(status: dict) -> dict:
    return next(c for c in status.get("conditions") or [] if c["type"] == "FiresHealthy")


def warnings_for(cluster, name: str) -> list:
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    return [e for e in events if e.involved_object.name == name and e.type == "Warning"]


def test_launcher_pods_pass_the_restricted_level_that_the_api_server_enforces(
    start_operator, cluster
):
    start_operator()
    _, cronjob = registered(cluster)
    admitted = cluster.core.create_namespaced_pod(
        cluster.namespace, pod_from(cluster, cronjob, "launcher"), dry_run="All"
    )
    assert admitted.spec.security_context.run_as_user == 65532
    # The namespace's level is enforced: the same pod without runAsNonRoot is refused.
    loose = pod_from(cluster, cronjob, "loose")
    del loose["spec"]["securityContext"]["runAsNonRoot"]
    with pytest.raises(ApiException) as refused:
        cluster.core.create_namespaced_pod(cluster.namespace, loose, dry_run="All")
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 403 and 'violates PodSecurity "restricted:latest"' in message
    assert "runAsNonRoot" in message


def test_a_launcher_pod_whose_image_is_missing_is_reported_on_its_schedule(start_operator, cluster):
    start_operator(WFCLOCK_LAUNCHER_IMAGE="localhost/wfclock:absent", **FAST_ACCOUNTING)
    _, cronjob = registered(cluster)
    job = cluster.job_from_cronjob(cronjob, last_full_hour())
    status = cluster.wait_status(
        "hourly",
        lambda s: fires_condition(s)["status"] == "False",
        timeout=60,
        what="FiresHealthy False",
    )
    condition = fires_condition(status)
    assert condition["reason"] == "LauncherImageUnavailable"
    assert f"of Job {job.metadata.name} cannot start: ErrImageNeverPull" in condition["message"]
    assert "localhost/wfclock:absent" in condition["message"]
    (event,) = warnings_for(cluster, "hourly")
    assert (event.reason, event.message) == ("LauncherImageUnavailable", condition["message"])
    assert status["phase"] == "Scheduled"  # registered; only its fires are unwell


def test_a_launcher_pod_whose_secret_is_gone_is_reported_and_the_secret_put_back(
    start_operator, cluster, database_url
):
    start_operator(**FAST_ACCOUNTING)
    run_at = datetime.now(UTC) + timedelta(seconds=8)
    cluster.apply("once", {"type": "schedule", "runAt": run_at.isoformat()})
    cluster.wait_status("once", lambda s: s.get("phase") == "Scheduled")
    (job,) = cluster.jobs("one-time")
    cluster.core.delete_namespaced_secret("wfclock-database", cluster.namespace)
    status = cluster.wait_status(
        "once",
        lambda s: s.get("phase") == "Completed" or fires_condition(s)["status"] == "False",
        timeout=60,
        what="FiresHealthy False",
    )
    condition = fires_condition(status)
    assert condition["reason"] == "LauncherConfigError", status
    # The kubelet's own words vary with its Secret cache ('secret "wfclock-database" not found',
    # or under load "failed to sync secret cache"); the Secret is named either way.
    assert (
        f"of Job {job.metadata.name} cannot start: CreateContainerConfigError: "
        in (condition["message"])
    )
    assert 'the launcher reads Secret "wfclock-database" key "url"' in condition["message"]
    assert [e.reason for e in warnings_for(cluster, "once")] == ["LauncherConfigError"]
    # The operator put the Secret back; the kubelet's next try starts the pod, whose fire is
    # the one run and clears the problem.
    cluster.wait_job_finished(job.metadata.name, timeout=120)
    (run,) = list_runs(engine_for(database_url))
    assert run["trigger_metadata"]["source"] == job.metadata.name
    status = cluster.wait_status("once", lambda s: s.get("phase") == "Completed")
    assert fires_condition(status)["status"] == "True"
