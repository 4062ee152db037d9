"""What the operator's Kubernetes wrappers cost the API server when many registrations of one
namespace arrive at once (an apply of many schedules into a new namespace): the namespace's
tenant label and the launcher Secret are read and written once, not once a worker. Counted by
the API server's own `apiserver_request_total`, on a control plane of the module's own (nothing
else calls it meanwhile)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client, config
from wfclock.controller.kube import Kube
from wfclock_devstack.controlplane import api_requests

WORKERS = 16
_names = iter(range(1000))


@pytest.fixture
def admin(plane):
    return config.new_client_from_config(config_file=str(plane.kubeconfig))


@pytest.fixture
def namespace(admin):
    name = f"burst-{next(_names)}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name, "labels": {"wfclock.dev/tenant": "acme"}}})
    yield name
    core.delete_namespace(name)


def at_once(call) -> list:
    """`call()` from WORKERS threads released together; their answers."""
    start = threading.Barrier(WORKERS)

    def one(_):
        start.wait()
        return call()

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, range(WORKERS)))


def requests_during(admin, call) -> dict:
    before = api_requests(admin)
    answers = at_once(call)
    after = api_requests(admin)
    # Namespaces and Secrets only: the controllers answer the namespace's creation meanwhile
    # (its ServiceAccount, its ConfigMap of the cluster's CA).
    counts = {
        f"{verb} {resource}": after[key] - before[key]
        for key in after
        if after[key] != before[key]
        for verb, resource, _ in [key]
        if resource in ("namespaces", "secrets")
    }
    return {"answers": answers, **counts}


def test_a_burst_of_registrations_reads_the_namespace_and_writes_its_secret_once(admin, namespace):
    kube = Kube(admin)
    data = {"url": "postgresql://acme@db/wfclock"}

    tenants = requests_during(admin, lambda: kube.namespace_tenant(namespace))
    assert tenants == {"answers": ["acme"] * WORKERS, "GET namespaces": 1}

    secrets = requests_during(admin, lambda: kube.ensure_secret(namespace, "db", data))
    assert sorted(secrets["answers"]) == [False] * (WORKERS - 1) + [True]
    assert {k: n for k, n in secrets.items() if k != "answers"} == {
        "GET secrets": 1,
        "POST secrets": 1,
    }
    stored = client.CoreV1Api(admin).read_namespaced_secret("db", namespace)
    assert stored.data == {"url": "cG9zdGdyZXNxbDovL2FjbWVAZGIvd2ZjbG9jaw=="}


def test_a_copied_secret_is_read_from_its_source_and_written_only_when_it_differs(admin, namespace):
    kube = Kube(admin)
    core = client.CoreV1Api(admin)
    source = {"metadata": {"name": "source"}, "stringData": {"url": "postgresql://one"}}
    core.create_namespaced_secret("default", source)
    try:
        first = requests_during(admin, lambda: kube.copy_secret("default/source", namespace, "db"))
        assert sorted(first.pop("answers")) == [False] * (WORKERS - 1) + [True]
        # The source each time, the copy once (absent), written once.
        assert first == {"GET secrets": WORKERS + 1, "POST secrets": 1}

        again = requests_during(admin, lambda: kube.copy_secret("default/source", namespace, "db"))
        assert again == {"answers": [False] * WORKERS, "GET secrets": WORKERS}

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
