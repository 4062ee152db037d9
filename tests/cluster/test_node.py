"""A real node: the scheduler places a Job's pod on it, the kubelet runs the container in containerd
with runc, the pod reaches a server of this machine over the pod network, a missing image is
reported, and a node killed with -9 leaves nothing that the next start does not clear."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from kubernetes import client
from wfclock_devstack import nodehost, podstack
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node
from wfclock_devstack.processes import wait_until

RUNTIME = "io.containerd.runc.v2"


@pytest.fixture(scope="module")
def node_namespace(node_api):
    core = client.CoreV1Api(node_api)
    core.create_namespace({"metadata": {"name": "node-test"}})
    yield "node-test"
    core.delete_namespace("node-test")


@pytest.fixture(scope="module")
def probe_image(node):
    """tests/node/probe, built by scripts/build-node.sh, imported into the node's containerd."""
    return node.import_image(node.bin / "probe.tar")[0]


@pytest.fixture(scope="module")
def host_postgres(node):
    """A Postgres of this machine that pods reach on the node's address, with a password."""
    server = podstack.postgres_for(node)
    server.start()
    password = secrets.token_hex(12)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE probe LOGIN PASSWORD '{password}'")
        conn.execute(
            "CREATE TABLE node_probe (pod text, label text, token text, token_file text, "
            "uid int, root_write text, client text)"
        )
        conn.execute("GRANT SELECT, INSERT ON node_probe TO probe")
    pod_url = f"postgresql://probe:{password}@{node.host_ip}:{server.port}/postgres?sslmode=disable"
    yield server, pod_url
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


def probe_job(name: str, image: str, label: str) -> dict:
    def from_secret(key):
        return {"secretKeyRef": {"name": "probe", "key": key}}

    def field(path):
        return {"fieldRef": {"fieldPath": path}}

    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"probe": label}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumes": [{"name": "probe", "secret": {"secretName": "probe"}}],
                    "containers": [
                        {
                            "name": "probe",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "DATABASE_URL", "valueFrom": from_secret("url")},
                                {"name": "TOKEN", "valueFrom": from_secret("token")},
                                {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                                {
                                    "name": "POD_LABEL",
                                    "valueFrom": field("metadata.labels['probe']"),
                                },
                            ],
                            "volumeMounts": [{"name": "probe", "mountPath": "/etc/probe"}],
                            "securityContext": {
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def describe(node: Node, namespace: str) -> str:
    """What to read when a pod did not do what a test expected."""
    pods = node.plane.kubectl("get", "pods", "-n", namespace, "-o", "yaml", check=False)
    events = node.plane.kubectl("get", "events", "-n", namespace, check=False)
    kubelet = node.logs("kubelet").read_text(errors="replace")[-3000:]
    return f"pods:\n{pods[-4000:]}\nevents:\n{events}\nkubelet log tail:\n{kubelet}"


def test_job_pod_is_scheduled_run_by_containerd_and_reaches_postgres_on_the_host(
    node, node_api, node_namespace, probe_image, host_postgres
):
    server, pod_url = host_postgres
    core, batch = client.CoreV1Api(node_api), client.BatchV1Api(node_api)
    token, label = secrets.token_hex(8), f"l-{secrets.token_hex(4)}"
    core.create_namespaced_secret(
        node_namespace,
        {"metadata": {"name": "probe"}, "stringData": {"url": pod_url, "token": token}},
    )
    batch.create_namespaced_job(node_namespace, probe_job("probe", probe_image, label))

    def finished():
        status = batch.read_namespaced_job("probe", node_namespace).status
        return status.succeeded or status.failed

    try:
        wait_until(finished, 180, "the probe Job to finish", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{describe(node, node_namespace)}") from None
    job = batch.read_namespaced_job("probe", node_namespace)
    assert job.status.succeeded == 1, describe(node, node_namespace)

    (pod,) = core.list_namespaced_pod(node_namespace, label_selector="job-name=probe").items
    assert pod.spec.node_name == node.name  # bound by the scheduler: the Job never names a node
    assert {c.type: c.status for c in pod.status.conditions}["PodScheduled"] == "True"
    (container,) = pod.status.container_statuses
    assert container.state.terminated.exit_code == 0
    assert container.container_id.startswith("containerd://")
    info = json.loads(node.ctr("containers", "info", container.container_id.split("//")[1]))
    assert info["Runtime"]["Name"] == RUNTIME
    assert b"/usr/sbin/runc" in base64.b64decode(info["Runtime"]["Options"]["value"])
    assert info["Image"] == probe_image

    with psycopg.connect(server.url()) as conn:
        rows = conn.execute(
            "SELECT pod, label, token, token_file, uid, root_write, client FROM node_probe "
            "WHERE pod = %s",
            (pod.metadata.name,),
        ).fetchall()
    assert len(rows) == 1, rows
    name, seen_label, seen_token, token_file, uid, root_write, client_address = rows[0]
    assert (name, seen_label, seen_token, token_file, uid) == (
        pod.metadata.name,
        label,
        token,
        token,
        65532,
    )
    assert "read-only file system" in root_write
    assert client_address == pod.status.pod_ip
    assert ipaddress.ip_address(client_address) in ipaddress.ip_network(node.pod_subnet)
    assert pod.status.host_ip == node.host_ip

    # The API server reads the log through the kubelet (its client certificate, the kubelet's
    # webhook authorization).
    log = core.read_namespaced_pod_log(pod.metadata.name, node_namespace)
    assert f"reported to Postgres from {pod.status.pod_ip} as uid 65532" in log

    # The kernel tunables the kubelet set at its start are back as they were before any node
    # (waited for: another test run's node may be starting on this machine).
    before = json.loads(nodehost.SYSCTLS_SAVED.read_text())
    wait_until(
        lambda: {key: int(Path("/proc/sys", key).read_text()) for key in before} == before,
        15,
        f"the kernel tunables to be as before the kubelet: {before}",
    )

    # The node writes no firewall rules: no kube-proxy, no masquerading, no kubelet chains.
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save):
            rules = subprocess.run([save], capture_output=True, text=True).stdout
            assert "KUBE-" not in rules and "CNI-" not in rules, rules


@pytest.mark.parametrize(
    ("policy", "reasons"),
    [("Never", {"ErrImageNeverPull"}), ("IfNotPresent", {"ErrImagePull", "ImagePullBackOff"})],
)
def test_pod_whose_image_is_missing_reports_why_it_cannot_start(
    node, node_api, node_namespace, policy, reasons
):
    core = client.CoreV1Api(node_api)
    name = f"missing-image-{policy.lower()}"
    core.create_namespaced_pod(
        node_namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "c", "image": "localhost/wfclock/absent:1", "imagePullPolicy": policy}
                ],
            },
        },
    )

    def waiting():
        statuses = core.read_namespaced_pod(name, node_namespace).status.container_statuses
        state = statuses and statuses[0].state.waiting
        return state if state and state.reason in reasons else None

    try:
        state = wait_until(waiting, 90, f"{name} to report its image", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{describe(node, node_namespace)}") from None
    assert "localhost/wfclock/absent:1" in state.message
    assert core.read_namespaced_pod(name, node_namespace).status.phase == "Pending"


# A node whose owner dies by SIGKILL: its kubelet, containerd and control plane die with it (they
# die with their parent), its pod's container and shim live on. Writes its claim, then waits.
CRASHING_NODE = """
import json, sys, time
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.node import Node, image_names
plane = ControlPlane().start()
node = Node(plane).start()
pause = image_names(node.bin / "pause.tar")[0]
plane.kubectl("run", "sleeper", f"--image={pause}", "--image-pull-policy=Never", "--restart=Never")
plane.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")
claim = dict(vars(node.claim), plane_root=str(plane.root))
open(sys.argv[1], "w").write(json.dumps(claim))
time.sleep(600)
"""


def test_a_node_killed_with_9_is_cleared_by_the_next_start_which_stops_without_a_trace(tmp_path):
    report = tmp_path / "claim.json"
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_NODE, str(report)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "crashing.log").open("w"),
    )
    try:
        wait_until(
            lambda: report.exists() or crashing.poll() is not None, 300, "the crashing node's pod"
        )
        assert report.exists(), (tmp_path / "crashing.log").read_text()[-3000:]
    finally:
        os.kill(crashing.pid, signal.SIGKILL)
        crashing.wait()
    fields = json.loads(report.read_text())
    shutil.rmtree(fields.pop("plane_root"), ignore_errors=True)
    crashed = nodehost.Claim(**fields)
    # What a crash leaves: the pod's container and its shim, mounts, cgroups, the bridge.
    assert nodehost.cgroup_processes(crashed.cgroup)
    left = nodehost.leftovers(crashed)
    for kind in ("folder", "mount", "process", "cgroup", "bridge", "record"):
        assert any(item.startswith(kind) for item in left), left

    plane = ControlPlane().start()
    successor = Node(plane)
    try:
        successor.start()
        left = nodehost.leftovers(crashed)
        if (
            successor.claim.bridge == crashed.bridge
        ):  # its network was free again: now the new one's
            left.remove(f"bridge {crashed.bridge}")
        assert left == []
        mine = successor.claim
        successor.stop()
        assert nodehost.leftovers(mine) == []
    finally:
        successor.stop()
        plane.remove()
