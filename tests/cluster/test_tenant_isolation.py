"""A tenant's `edit` user, holding everything Kubernetes lets it read in its namespace, cannot
touch another tenant's schedules, runs or ledger: not through SQL, not through the launcher."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from wfclock.db.store import ScheduleState, engine_for, list_fires, upsert_schedule
from wfclock_devstack.processes import wait_until

from launcher_job.main import main as launcher_main

from .conftest import WORKFLOW


def as_user(api: client.ApiClient, user: str) -> client.CoreV1Api:
    impersonating = client.ApiClient(api.configuration)
    impersonating.set_default_header("Impersonate-User", user)
    return client.CoreV1Api(impersonating)


def globex_schedule(database_url: str) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    state = ScheduleState(
        schedule_id=schedule_id, tenant="globex", namespace="globex", name="payroll",
        workflow_id=uuid.UUID(WORKFLOW), workflow_version=1, trigger_type="recurring",
        run_at=None, cron="0 9 * * 1", timezone="UTC", status="scheduled", missed_fires="latest",
        catch_up_window_seconds=3600, generation=1, registered_kind="CronJob",
        registered_name="payroll-x", next_fire_at=None,
    )  # fmt: skip
    upsert_schedule(engine_for(database_url), state, published_at=datetime(2026, 1, 1, tzinfo=UTC))
    return schedule_id


def test_an_edit_user_of_one_tenant_cannot_reach_another_tenants_rows(
    start_operator, api, cluster, namespace, database_url
):
    start_operator()
    globex = globex_schedule(database_url)
    cluster.apply("nightly", {"type": "recurring", "cron": "0 3 * * *", "timezone": "UTC"})
    cluster.wait_status("nightly", lambda s: s.get("phase") == "Scheduled")
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "alice"}],
        },
    )  # fmt: skip
    alice = as_user(api, "alice")

    def launcher_secret():
        try:
            secret = alice.read_namespaced_secret("wfclock-database", namespace)
        except ApiException:
            return None
        url = base64.b64decode(secret.data["url"]).decode()
        return url if "wfclock_t_" in url and "_acme:" in url else None

    url = wait_until(launcher_secret, 30, "alice to read the tenant's launcher Secret")
    with pytest.raises(ApiException) as denied:
        alice.read_namespaced_secret("wfclock-database", "kube-system")
    assert denied.value.status == 403
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in (
            "SELECT * FROM workflow_schedules",
            f"UPDATE workflow_schedules SET workflow_version = 9 WHERE schedule_id = '{globex}'",
            f"DELETE FROM workflow_schedule_fires WHERE schedule_id = '{globex}'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    env = {
        "WFCLOCK_DATABASE_URL": url,
        "WFCLOCK_SCHEDULE_ID": str(globex),
        "WFCLOCK_JOB_NAME": f"payroll-x-{int(datetime.now(UTC).timestamp()) // 60}",
        "WFCLOCK_CRON": "0 9 * * 1",
        "WFCLOCK_TIMEZONE": "UTC",
    }
    assert launcher_main(env) == 2
    # The same from a launcher pod of acme's own, on the node: its CronJob's pod, pointed at
    # globex's schedule, is refused (exit 2) and writes nothing.
    (cronjob,) = cluster.cronjobs()
    template = cluster.batch.api_client.sanitize_for_serialization(
        cronjob.spec.job_template.spec.template
    )
    container = template["spec"]["containers"][0]
    container["env"] = [
        e for e in container["env"] if e["name"] not in env or e["name"] == "WFCLOCK_DATABASE_URL"
    ] + [{"name": k, "value": v} for k, v in env.items() if k != "WFCLOCK_DATABASE_URL"]
    cluster.core.create_namespaced_pod(
        namespace, {"metadata": {"name": "to-globex"}, "spec": template["spec"]}
    )
    pod = wait_until(
        lambda: (
            (p := cluster.core.read_namespaced_pod("to-globex", namespace)).status.phase
            in ("Succeeded", "Failed")
            and p
        ),
        90,
        "the pod to finish",
    )
    assert pod.spec.node_name and pod.status.container_statuses[0].state.terminated.exit_code == 2
    assert list_fires(engine_for(database_url), globex) == []
