"""The session's control plane with a real node joined to it (fires' pods are real containers
of wfclock's image, started by the kubelet), the session's Postgres also on the node's address, a
fresh tenant namespace per test under the restricted Pod Security level; a control plane without
a node for the tests that install cluster-wide objects."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import subprocess
from datetime import datetime
from pathlib import Path

import kopf.testing
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from wfclock_devstack import nodehost, podstack
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.processes import wait_until
from wfclock_devstack.repo import repository

from ..conftest import serve_migrated

_names = itertools.count()
log = logging.getLogger("wfclock.tests")

# Tenant namespaces: launcher pods must pass the restricted level (enforced on pods; a CronJob or
# Job whose template would not pass is warned about when it is created).
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def node():
    """A real node (containerd with runc, CNI bridge, kubelet, kube-scheduler) on the session's
    control plane: every pod the tests' Jobs make is scheduled to it and run in a container."""
    plane = ControlPlane().start()
    try:
        started = Node(plane).start()
    except BaseException:
        plane.remove()
        raise
    log.info("control plane ready in %.1fs, node %s in %.1fs", plane.ready_seconds,
             started.name, started.ready_seconds)  # fmt: skip
    yield started
    claim = started.claim
    started.stop()
    plane.remove()
    assert nodehost.leftovers(claim) == []


@pytest.fixture(scope="session")
def control_plane(node):
    return node.plane


@pytest.fixture(scope="module")
def plane():
    """A control plane of the module's own, without a node (the chart and standby tests install
    cluster-wide objects; the pod runner plays the node there)."""
    started = ControlPlane().start()
    yield started
    started.remove()


def tenant_namespace(api: client.ApiClient, name: str, tenant: str = "acme"):
    """A namespace of `tenant`, for a fixture to `yield from`: deleted after the test."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": {"wfclock.dev/tenant": tenant}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def api(control_plane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def node_api(node) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(node.plane.kubeconfig))


@pytest.fixture(scope="session")
def launcher_image(node) -> str:
    """wfclock's image (`make image`: cached, rebuilt when the sources change), imported into the
    node's containerd: the image of every fire's pod, which never pulls it."""
    script = repository() / "scripts" / "build-image.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return node.import_image(Path(out.stdout.strip().splitlines()[-1]))[0]


@pytest.fixture(scope="session")
def postgres(node):
    """The session's Postgres, also listening on the node's address: fires' pods log in there
    with their tenant's password (scram-sha-256, from the pod network only)."""
    server = serve_migrated(podstack.postgres_for(node))
    yield server
    server.discard()


@pytest.fixture
def namespace(api, request):
    name = f"t{next(_names)}-{request.node.name[:40].lower().replace('_', '-').strip('-')}"
    name = "".join(c for c in name if c.isalnum() or c == "-")[:60].rstrip("-")
    core = client.CoreV1Api(api)
    labels = {"wfclock.dev/tenant": "acme", **RESTRICTED}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    yield name
    core.delete_namespace(name)


# --- the operator and what it needs -----------------------------------------------------------


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
def operator_env(database_url, node, postgres, launcher_image):
    """The operator runs here; its launcher pods run on the node, from the imported image, and
    reach Postgres on the node's address with their tenant's login."""
    return {
        "WFCLOCK_DATABASE_URL": database_url,
        "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "5",
        "WFCLOCK_EDITION": "enterprise",
        "WFCLOCK_METRICS_PORT": "0",
        "WFCLOCK_LAUNCHER_IMAGE": launcher_image,
        "WFCLOCK_LAUNCHER_IMAGE_PULL_POLICY": "Never",
        "WFCLOCK_LAUNCHER_DATABASE_HOST": f"{node.host_ip}:{postgres.port}",
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


def schedule_body(name: str, trigger: dict, **spec) -> dict:
    """A WorkflowSchedule of tenant `acme` running the test workflow on `trigger`."""
    return {
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


class Cluster:
    """What the end-to-end tests do with kubectl-like ease."""

    def __init__(self, api, namespace):
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    def apply(self, name, trigger, **spec):
        body = schedule_body(name, trigger, **spec)
        try:
            return self.objects.create_namespaced_custom_object(
                "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        # The whole spec, as `kubectl apply` of the new manifest; a replace that meets a write
        # of the operator's (the status, kopf's bookkeeping) since the read is made again, as
        # kubectl does (the soak met it once in 30 minutes).
        attempts = 0
        while True:
            current = self.get(name)
            current["spec"] = body["spec"]
            try:
                return self.objects.replace_namespaced_custom_object(
                    "wfclock.dev", "v1alpha1", self.namespace, "workflowschedules", name, current
                )
            except ApiException as exc:
                attempts += 1
                if exc.status != 409 or attempts == 10:
                    raise

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

    def wait_job_finished(self, name, timeout=90):
        def done():
            status = self.batch.read_namespaced_job(name, self.namespace).status
            return status.succeeded or status.failed

        try:
            return wait_until(done, timeout, f"Job {name} to finish", interval=0.3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def run_pod_again(self, job: str) -> str:
        """A second pod with the spec and the Job's name label of `job`'s pod, as a retry or a
        restarted kubelet would run it (not the Job's: no controller labels or owner)."""
        (pod,) = self.pods(job)
        spec = self.core.api_client.sanitize_for_serialization(pod.spec)
        spec.pop("nodeName", None)
        name = f"{pod.metadata.name}-again"
        labels = {"batch.kubernetes.io/job-name": job}
        self.core.create_namespaced_pod(
            self.namespace, {"metadata": {"name": name, "labels": labels}, "spec": spec}
        )

        def finished():
            phase = self.core.read_namespaced_pod(name, self.namespace).status.phase
            return phase in ("Succeeded", "Failed") and phase

        try:
            wait_until(finished, 90, f"pod {name} to finish", interval=0.3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None
        # Raw: the client would parse a log that reads as JSON into a dict.
        log = self.core.read_namespaced_pod_log(name, self.namespace, _preload_content=False)
        return log.data.decode()

    def pods(self, job: str) -> list:
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
        ).items

    def describe(self) -> str:
        """The namespace's pods and events: what to read when a fire's pod did not run."""
        pods = [
            (p.metadata.name, p.status.phase, p.spec.node_name, p.status.container_statuses)
            for p in self.core.list_namespaced_pod(self.namespace).items
        ]
        events = [
            (e.involved_object.kind, e.involved_object.name, e.reason, e.message)
            for e in self.core.list_namespaced_event(self.namespace).items
        ]
        return f"pods: {pods}\nevents: {events}"


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
