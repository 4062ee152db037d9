"""The local control plane for the whole session, a fresh namespace per test, the pod runner."""

from __future__ import annotations

import itertools
import logging

import pytest
from kubernetes import client, config

from wfclock.devstack.controlplane import ControlPlane
from wfclock.devstack.podrunner import PodRunner

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
