"""What the operator's Kubernetes wrappers ask of the API server when many registrations of one
namespace arrive at once (an apply of many schedules into a new namespace): the namespace's
tenant label and the launcher Secret are read and written once, not once a worker. The requests
are counted where wfclock sends them (its API client, against a control plane of the module's
own); the API server's own counters also count its controllers."""

from __future__ import annotations

import collections
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import urllib3
from kubernetes import client, config
from wfclock.controller.kube import Kube, TimedApiClient

from .conftest import tenant_namespace

WORKERS = 16
_names = iter(range(1000))


class CountingClient(TimedApiClient):
    """wfclock's API client, counting the requests it sends, by method and path."""

    def __init__(self, configuration):
        super().__init__(configuration)
        self.sent: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def request(self, method, url, *args, **kwargs):
        with self._lock:
            self.sent[f"{method} {urlsplit(url).path}"] += 1
        return super().request(method, url, *args, **kwargs)

    def take(self) -> dict:
        with self._lock:
            sent, self.sent = dict(self.sent), collections.Counter()
        return sent


@pytest.fixture
def admin(plane):
    return config.new_client_from_config(config_file=str(plane.kubeconfig))


@pytest.fixture
def counted(plane):
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(plane.kubeconfig), client_configuration=configuration)
    return CountingClient(configuration)


@pytest.fixture
def namespace(admin):
    yield from tenant_namespace(admin, f"burst-{next(_names)}")


def at_once(call) -> list:
    """`call()` from WORKERS threads released together; their answers."""
    start = threading.Barrier(WORKERS)

    def one(_):
        start.wait()
        return call()

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, range(WORKERS)))


def test_a_burst_of_registrations_reads_the_namespace_and_writes_its_secret_once(
    admin, counted, namespace
):
    kube = Kube(counted)
    data = {"url": "postgresql://acme@db/wfclock"}

    assert at_once(lambda: kube.namespace_tenant(namespace)) == ["acme"] * WORKERS
    assert counted.take() == {f"GET /api/v1/namespaces/{namespace}": 1}

    answers = at_once(lambda: kube.ensure_secret(namespace, "db", data))
    assert sorted(answers) == [False] * (WORKERS - 1) + [True]
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    assert counted.take() == {f"GET {secrets}/db": 1, f"POST {secrets}": 1}
    stored = client.CoreV1Api(admin).read_namespaced_secret("db", namespace)
    assert stored.data == {"url": "cG9zdGdyZXNxbDovL2FjbWVAZGIvd2ZjbG9jaw=="}


def test_a_copied_secret_is_read_from_its_source_and_written_only_when_it_differs(
    admin, counted, namespace
):
    kube = Kube(counted)
    core = client.CoreV1Api(admin)
    source = {"metadata": {"name": "source"}, "stringData": {"url": "postgresql://one"}}
    core.create_namespaced_secret("default", source)
    read_source = "GET /api/v1/namespaces/default/secrets/source"
    copies = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        answers = at_once(lambda: kube.copy_secret("default/source", namespace, "db"))
        assert sorted(answers) == [False] * (WORKERS - 1) + [True]
        # The source each time; the copy read once (absent) and written once.
        assert counted.take() == {read_source: WORKERS, f"GET {copies}/db": 1, f"POST {copies}": 1}

        answers = at_once(lambda: kube.copy_secret("default/source", namespace, "db"))
        assert answers == [False] * WORKERS
        assert counted.take() == {read_source: WORKERS}

        core.patch_namespaced_secret(
            "source", "default", {"stringData": {"url": "postgresql://two"}}
        )
        assert kube.copy_secret("default/source", namespace, "db") is True  # a rotation arrives
        copy = core.read_namespaced_secret("db", namespace).data
        assert copy == core.read_namespaced_secret("source", "default").data

        core.delete_namespaced_secret("db", namespace)  # by hand: the resync's force puts it back
        assert kube.copy_secret("default/source", namespace, "db", force=True) is True
        assert core.read_namespaced_secret("db", namespace).data == copy
    finally:
        core.delete_namespaced_secret("source", "default")


def test_a_secret_deleted_by_hand_is_noticed_once_what_was_seen_is_older_than_the_cache(
    admin, counted, namespace
):
    kube = Kube(counted, cache_seconds=1)
    data = {"url": "postgresql://acme@db/wfclock"}
    assert kube.ensure_secret(namespace, "db", data) is True
    client.CoreV1Api(admin).delete_namespaced_secret("db", namespace)
    assert kube.ensure_secret(namespace, "db", data) is False  # trusted what it saw a moment ago
    time.sleep(1.2)
    assert kube.ensure_secret(namespace, "db", data) is True
    assert client.CoreV1Api(admin).read_namespaced_secret("db", namespace).data


def test_a_call_to_an_api_server_that_never_answers_fails_instead_of_holding_the_lookup():
    """A half-open connection: the server takes the connection and never answers. Both callers
    of the same namespace's look-up get an error (kopf retries them), neither waits forever."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        configuration.retries = False
        kube = Kube(TimedApiClient(configuration, timeout=(1, 1)))
        errors: list[Exception] = []

        def look_up():
            try:
                kube.namespace_tenant("acme")
            except urllib3.exceptions.HTTPError as exc:
                errors.append(exc)

        callers = [threading.Thread(target=look_up, daemon=True) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(30)
        assert [caller.is_alive() for caller in callers] == [False, False]
        assert [type(e).__name__ for e in errors] == ["ReadTimeoutError"] * 2


def test_the_resyncs_children_are_read_in_pages_and_kept_slim(
    admin, counted, namespace, monkeypatch
):
    """A resync over many schedules holds one page of whole objects at a time: every CronJob is
    found across pages, and what is kept of each is what drift and staleness are judged by."""
    monkeypatch.setattr("wfclock.controller.kube.LIST_PAGE", 2)
    batch = client.BatchV1Api(admin)
    template = {
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x"}]}
            }
        }
    }
    for i in range(5):
        batch.create_namespaced_cron_job(
            namespace,
            {
                "metadata": {
                    "name": f"c-{i}",
                    "labels": {"app.kubernetes.io/managed-by": "wfclock", "n": str(i)},
                },
                "spec": {"schedule": "0 * * * *", "timeZone": "UTC", "jobTemplate": template},
            },
        )
    kube = Kube(counted)
    counted.take()
    cronjobs, jobs = kube.list_children([namespace])
    lists = counted.take()
    assert sorted(name for _, name in cronjobs) == [f"c-{i}" for i in range(5)] and jobs == {}
    assert lists[f"GET /apis/batch/v1/namespaces/{namespace}/cronjobs"] == 3  # 2 + 2 + 1
    kept = cronjobs[(namespace, "c-3")]
    assert kept["spec"] == {"suspend": False, "schedule": "0 * * * *", "timeZone": "UTC"}
    assert set(kept["metadata"]) == {"name", "namespace", "uid", "labels", "creationTimestamp"}
    assert kept["metadata"]["labels"]["n"] == "3"
    # Jobs, and every namespace at once (the operator's default scope), are paged alike.
    for i in range(3):
        job = {
            "metadata": {"name": f"j-{i}", "labels": {"app.kubernetes.io/managed-by": "wfclock"}},
            "spec": {"suspend": True, **template["spec"]},
        }
        batch.create_namespaced_job(namespace, job)
    counted.take()
    cronjobs, jobs = kube.list_children([])
    lists = counted.take()
    assert {key for key in cronjobs if key[0] == namespace} == {
        (namespace, f"c-{i}") for i in range(5)
    }
    assert {key for key in jobs if key[0] == namespace} == {(namespace, f"j-{i}") for i in range(3)}
    assert lists["GET /apis/batch/v1/cronjobs"] >= 3 and lists["GET /apis/batch/v1/jobs"] >= 2
    assert set(jobs[(namespace, "j-1")]["spec"]) == {"suspend"}
