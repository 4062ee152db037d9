"""The operator as the chart installs it: `helm install` of the chart with the image built here,
its pod run by the kubelet on a real node under Pod Security `restricted`, with nothing but its
ServiceAccount's token; fires are launcher containers run by the kubelet from the same image.
Each fire is one run through pause, edit, delete and the operator's pod deleted by hand; an
independent accounting checks every fire (wfclock_devstack.accounting)."""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kubernetes import config
from kubernetes.client.rest import ApiException
from wfclock_devstack import nodehost, podstack
from wfclock_devstack.accounting import Change, account
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.processes import wait_until

from .conftest import Cluster

TENANT = "acme"


def figure(line: str) -> None:
    sys.__stderr__.write(f"\n{line}\n")  # past pytest's capture, as the fault scenarios do


@pytest.fixture(scope="module")
def pod_node():
    """A control plane and a node of this module's own: the chart installs cluster-wide kinds."""
    plane = ControlPlane().start()
    node = Node(plane)
    try:
        node.start()
        yield node
    finally:
        claim = node.claim
        node.stop()
        plane.remove()
        if claim is not None:
            assert nodehost.leftovers(claim) == []


@pytest.fixture(scope="module")
def pods_postgres(pod_node):
    server = podstack.postgres_for(pod_node)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def release(pod_node, pods_postgres):
    archive = podstack.build_image()
    url = podstack.database_for_pods(pods_postgres, pod_node)
    plane = pod_node.plane
    podstack.create_tenant_namespace(plane, TENANT, TENANT)
    installed = podstack.install_operator(
        pod_node, archive, url, "--set", "minimumIntervalMinutes=1"
    )
    plane.wait_schedules_admitted(TENANT, TENANT)
    figure(f"helm install to operator pod Ready: {installed.ready_seconds:.1f}s")
    return installed


@pytest.fixture(scope="module")
def admin_url(pods_postgres):
    """The test's own view of the operator's database (the administrator, over the loopback)."""
    return pods_postgres.url("wfclock")


@pytest.fixture(scope="module")
def pods_cluster(pod_node, release):
    return Cluster(
        config.new_client_from_config(config_file=str(pod_node.plane.kubeconfig)), TENANT
    )


def test_operator_pod_runs_from_the_image_under_restricted_with_the_charts_service_account(
    pod_node, release, pods_cluster
):
    pod = release.pod()
    spec = pod["spec"]
    (container,) = spec["containers"]
    (status,) = pod["status"]["containerStatuses"]
    assert spec["nodeName"] == pod_node.name
    assert container["image"] == release.image and container["imagePullPolicy"] == "Never"
    assert status["containerID"].startswith("containerd://")
    # Its only credential: the chart's ServiceAccount token, mounted by admission.
    assert spec["serviceAccountName"] == "wfclock"
    (token,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert any("serviceAccountToken" in s for s in token["projected"]["sources"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == pod_node.api_host
    assert env["KUBERNETES_SERVICE_PORT"] == str(pod_node.api_port)
    assert "KUBECONFIG" not in env
    assert spec["securityContext"]["runAsUser"] == 65532
    # The release namespace enforces restricted: a privileged pod is refused there.
    refused = pod_node.plane.kubectl(
        "run",
        "privileged",
        "-n",
        release.namespace,
        f"--image={release.image}",
        "--dry-run=server",
        "--overrides",
        json.dumps(
            {
                "spec": {
                    "containers": [
                        {
                            "name": "privileged",
                            "image": release.image,
                            "securityContext": {"privileged": True},
                        }
                    ]
                }
            }
        ),
        check=False,
    )
    assert "violates PodSecurity" in refused and '"restricted:latest"' in refused, refused
    # The operator acts as its ServiceAccount: the API server says who the token is.
    review = pod_node.plane.kubectl(
        "create",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "system:serviceaccount:wfclock-system:wfclock",
                    "resourceAttributes": {
                        "verb": "list",
                        "resource": "secrets",
                        "namespace": "kube-system",
                    },
                },
            }
        ),
    )
    assert json.loads(review)["status"].get("allowed") is not True


def _at_second(low: int, high: int) -> None:
    """Waits until the current minute's second is in [low, high)."""
    while not low <= datetime.now(UTC).second < high:
        time.sleep(0.5)


def _minute(at: datetime, later: int = 0) -> datetime:
    return at.replace(second=0, microsecond=0) + timedelta(minutes=later)


def _sleep_until(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


def _fired(admin_url: str, uid: str, at: datetime) -> bool:
    with psycopg.connect(admin_url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM workflow_schedule_fires WHERE schedule_id = %s "
                "AND scheduled_for = %s",
                (uid, at),
            ).fetchone()[0]
            == 1
        )


def test_each_fire_is_one_run_through_pause_edit_delete_and_the_operator_pod_deleted(
    pod_node, release, pods_cluster, admin_url
):
    cluster = pods_cluster
    every_minute = {"type": "recurring", "cron": "* * * * *", "timezone": "UTC"}
    histories: dict[uuid.UUID, list[Change]] = {}

    def record(body) -> str:
        uid = body["metadata"]["uid"]
        histories.setdefault(uuid.UUID(uid), []).append(Change(applied, body["spec"]))
        return uid

    # Applied early in a minute, so the CronJobs exist before the next one begins.
    _at_second(2, 30)
    applied = datetime.now(UTC)
    m1 = _minute(applied, 1)
    uids = {
        name: record(cluster.apply(name, every_minute))
        for name in ("steady", "edited", "paused", "deleted")
    }
    # Due while the operator's pod is being replaced (below): the new pod releases it.
    run_at = _minute(applied, 2) + timedelta(seconds=8)
    uids["once"] = record(cluster.apply("once", {"type": "schedule", "runAt": run_at.isoformat()}))
    for name in uids:
        cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled", timeout=60)

    # The first minute's fires: launcher containers the kubelet runs from the image.
    wait_until(
        lambda: all(
            _fired(admin_url, uids[n], m1) for n in ("steady", "edited", "paused", "deleted")
        ),
        90,
        "the first minute's four fires",
        interval=1,
    )

    def succeeded():
        pods = cluster.core.list_namespaced_pod(TENANT, label_selector="wfclock.dev/schedule")
        return [p for p in pods.items if p.status.phase == "Succeeded"]

    ran = wait_until(succeeded, 60, "a launcher pod to succeed", interval=1)
    for pod in ran:
        (status,) = pod.status.container_statuses
        assert pod.spec.node_name == pod_node.name
        assert status.container_id.startswith("containerd://")
        assert release.image in status.image
        assert status.state.terminated.exit_code == 0
        assert pod.spec.automount_service_account_token is False

    # Edit, pause and delete, each on a schedule of its own, well after the first fires (a fire
    # just before a change may go either way; these must count).
    _sleep_until(m1 + timedelta(seconds=20))
    applied = datetime.now(UTC)
    edited = cluster.get("edited")
    record(cluster.apply("edited", {**every_minute, "cron": "*/2 * * * *"}))
    assert edited["spec"]["trigger"]["cron"] == "* * * * *"
    record(cluster.patch("paused", {"spec": {"paused": True}}))
    cluster.delete("deleted")
    histories[uuid.UUID(uids["deleted"])].append(Change(applied, None))
    wait_until(
        lambda: [c.metadata.name for c in cluster.cronjobs() if "deleted" in c.metadata.name] == [],
        60,
        "the deleted schedule's CronJob to go",
    )
    cluster.wait_status("paused", lambda s: s.get("phase") == "Paused", timeout=60)

    # The operator's pod deleted by hand shortly before the one-time fire is due.
    _sleep_until(run_at - timedelta(seconds=12))
    old = release.pod()
    assert old is not None, release.describe()
    deleted_at = time.monotonic()
    pod_node.plane.kubectl(
        "delete", "pod", "-n", release.namespace, old["metadata"]["name"], "--wait=false"
    )
    new = release.wait_ready(timeout=180, other_than=old["metadata"]["uid"])
    figure(f"operator pod deleted to its successor Ready: {time.monotonic() - deleted_at:.1f}s")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    cluster.wait_status("once", lambda s: s.get("phase") == "Completed", timeout=120)
    figure(f"one-time fire due {run_at:%H:%M:%S}Z released by the new pod")

    # The next minute's fires after the restart, then every fire accounted for.
    end = _minute(run_at, 1)
    _sleep_until(end + timedelta(seconds=5))
    deadline = time.monotonic() + 120
    while not (report := account(admin_url, histories, end, timedelta(seconds=15))).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    figure(f"operator pod accounting: {report.line()}")
    assert report.ok, f"{report.line()}: {report.lost + report.duplicated + report.unexpected}"
    # steady: three minutes; edited: one or two (*/2 from the second); paused, deleted: the
    # first minute; once: one.
    assert report.expected >= 3 + 2 + 1 + 1 + 1 and report.launched == report.expected
    with psycopg.connect(admin_url) as conn:
        runs = dict(
            conn.execute(
                "SELECT schedule_id::text, count(*) FROM workflow_runs GROUP BY schedule_id"
            ).fetchall()
        )
    assert runs[uids["once"]] == 1
    assert runs[uids["paused"]] == runs[uids["deleted"]] == 1
    with pytest.raises(ApiException) as gone:
        cluster.get("deleted")
    assert gone.value.status == 404
