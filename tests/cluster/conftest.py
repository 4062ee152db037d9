"""The local control plane for the whole session, a fresh namespace per test, the pod runner;
a real node on a control plane of its own."""

from __future__ import annotations

import itertools
import logging

import pytest
from kubernetes import client, config
from wfclock_devstack import nodehost
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.podrunner import PodRunner

_names = itertools.count()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane():
    plane = ControlPlane().start()
    logging.getLogger("wfclock.tests").info("control plane ready in %.1fs", plane.ready_seconds)
    yield plane
    plane.remove()


@pytest.fixture(scope="module")
def plane():
    """A control plane of the module's own (the chart and standby tests install cluster-wide
    objects)."""
    started = ControlPlane().start()
    yield started
    started.remove()


@pytest.fixture(scope="session")
def api(control_plane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture
def namespace(api, request):
    name = f"t{next(_names)}-{request.node.name[:40].lower().replace('_', '-').strip('-')}"
    name = "".join(c for c in name if c.isalnum() or c == "-")[:60].rstrip("-")
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": {"wfclock.dev/tenant": "acme"}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def pod_runner(api):
    runner = PodRunner(api, time_limit=120).start()
    yield runner
    runner.stop()


@pytest.fixture(scope="session")
def node():
    """A real node (containerd with runc, CNI bridge, kubelet, kube-scheduler) on a control plane
    of its own: on the shared one, the pod runner plays the node and its pods stay unscheduled."""
    plane = ControlPlane().start()
    try:
        started = Node(plane).start()
    except BaseException:
        plane.remove()
        raise
    logging.getLogger("wfclock.tests").info(
        "node %s ready in %.1fs", started.name, started.ready_seconds
    )
    yield started
    claim = started.claim
    started.stop()
    plane.remove()
    assert nodehost.leftovers(claim) == []


@pytest.fixture(scope="session")
def node_api(node) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(node.plane.kubeconfig))


# --- the operator and what it needs -----------------------------------------------------------

import base64  # noqa: E402
import os  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import kopf.testing  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from wfclock_devstack.processes import wait_until  # noqa: E402

CRD = Path(__file__).resolve().parents[2] / "crds" / "wfclock.dev_workflowschedules.yaml"
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


@pytest.fixture(scope="session")
def crds(control_plane, api):
    control_plane.install_crds(CRD.parent)
    return CRD


class Operator:
    """kopf in a thread, watching one namespace, restartable."""

    def __init__(self, control_plane, namespace, env):
        self.control_plane, self.namespace, self.env = control_plane, namespace, env
        self.runner = None

    def start(self):
        # kopf reads its login and the operator its settings from the environment at start;
        # what this sets is put back on stop.
        self.saved = {k: os.environ.get(k) for k in [*self.env, "KUBECONFIG"]}
        os.environ.update(self.env)
        os.environ["KUBECONFIG"] = str(self.control_plane.kubeconfig)
        self.runner = kopf.testing.KopfRunner(
            [
                "run",
                "--standalone",
                "--namespace",
                self.namespace,
                "-m",
                "wfclock.controller.handlers",
            ],
            timeout=60,
        )
        self.runner.__enter__()
        return self

    def stop(self):
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.__exit__(None, None, None)
            for key, value in self.saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            assert runner.exception is None, runner.exception


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


@pytest.fixture
def database_secret(api, namespace, database_url):
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "wfclock-database"},
            "data": {"url": base64.b64encode(database_url.encode()).decode()},
        },
    )


@pytest.fixture
def start_operator(control_plane, crds, namespace, operator_env, database_secret):
    started = []

    def start(**env):
        operator = Operator(control_plane, namespace, {**operator_env, **env}).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()


class Cluster:
    """What the end-to-end tests do with kubectl-like ease."""

    def __init__(self, api, namespace):
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def apply(self, name, trigger, **spec):
        body = {
            "apiVersion": "wfclock.dev/v1alpha1",
            "kind": "WorkflowSchedule",
            "metadata": {"name": name},
            "spec": {
                "tenant": "acme",
                "workflowId": WORKFLOW,
                "workflowVersion": 1,
                "trigger": trigger,
                **spec,
            },
        }
        try:
            return self.objects.create_namespaced_custom_object(
                "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = self.get(name)
        current["spec"] = body["spec"]  # the whole spec, as `kubectl apply` of the new manifest
        return self.objects.replace_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", name, current
        )

    def patch(self, name, body):
        return self.objects.patch_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", name, body
        )

    def get(self, name):
        return self.objects.get_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", name
        )

    def delete(self, name):
        self.objects.delete_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", name
        )

    def list(self):
        return self.objects.list_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules"
        )["items"]

    def status(self, name):
        return self.get(name).get("status") or {}

    def wait_status(self, name, predicate, timeout=30, what="status"):
        return wait_until(
            lambda: predicate(self.status(name)) and self.status(name),
            timeout,
            f"{name} {what}",
            interval=0.2,
        )

    def cronjobs(self):
        return self.batch.list_namespaced_cron_job(self.namespace).items

    def jobs(self, registration=None):
        jobs = self.batch.list_namespaced_job(self.namespace).items
        return [
            j
            for j in jobs
            if registration is None
            or (j.metadata.labels or {}).get("wfclock.dev/registration") == registration
        ]

    def job_from_cronjob(self, cronjob, scheduled_for: datetime):
        """The Job the CronJob controller creates for `scheduled_for` (same name, same template)."""
        name = f"{cronjob.metadata.name}-{int(scheduled_for.timestamp()) // 60}"
        template = self.batch.api_client.sanitize_for_serialization(cronjob.spec.job_template)
        body = {
            "metadata": {
                "name": name,
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"].get("annotations"),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": cronjob.metadata.name,
                        "uid": cronjob.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        return self.batch.create_namespaced_job(self.namespace, body)

    def wait_job_finished(self, name, timeout=60):
        def done():
            status = self.batch.read_namespaced_job(name, self.namespace).status
            return status.succeeded or status.failed

        return wait_until(done, timeout, f"Job {name} to finish", interval=0.3)


@pytest.fixture
def cluster(api, namespace):
    return Cluster(api, namespace)


def backdate(database_url: str, uid: str, hours: int = 2) -> None:
    """Makes a schedule look published `hours` ago, so fires of the recent past are its own."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE workflow_schedules SET trigger_effective_from = trigger_effective_from - "
            "make_interval(hours => %s), accounted_until = trigger_effective_from - "
            "make_interval(hours => %s) WHERE schedule_id = %s",
            (hours, hours, uid),
        )
