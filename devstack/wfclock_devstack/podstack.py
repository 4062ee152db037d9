"""The operator as a user runs it: the chart installed with `helm install`, on a local node, from
the image `make image` builds.

    archive = build_image()
    url = database_for_pods(postgres, node)       # Postgres listening on node.host_ip
    release = install_operator(node, archive, url, "--set", "minimumIntervalMinutes=1")
    release.pod()                                  # the operator's pod, Ready

What the node and the chart need for it, and why (docs/node.md):

- the image is imported into the node's containerd (no registry): `image.pullPolicy=Never`;
- the pod reaches the API server through the node's relay on its address: `apiServer.host` and
  `apiServer.port` (KUBERNETES_SERVICE_HOST / _PORT), with its ServiceAccount's token, which
  the ServiceAccount admission plugin mounts; the chart's RBAC is all it has;
- the pod reaches Postgres on the node's address with a password: the database URL in the
  release namespace's Secret names a login of its own with CREATEROLE (tenant logins);
- the release namespace enforces Pod Security `restricted`, which the chart's pod passes.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from wfclock_devstack.node import Node
from wfclock_devstack.postgres import PostgresServer
from wfclock_devstack.processes import wait_until
from wfclock_devstack.repo import repository

RELEASE = "wfclock"
RELEASE_NAMESPACE = "wfclock-system"
DATABASE_SECRET = "wfclock-database"
OPERATOR_LOGIN = "wfclock"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def build_image() -> Path:
    """The project's image as a docker-archive (`scripts/build-image.sh`, cached)."""
    script = repository() / "scripts" / "build-image.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def postgres_for(node: Node) -> PostgresServer:
    """A Postgres (not yet started) in a temporary folder, listening on the node's address too and
    asking passwords of its pod network: what pods on `node` log in to."""
    return PostgresServer(
        Path(tempfile.mkdtemp(prefix="wfclock-pg-")),
        also_listen=(node.host_ip,),
        password_networks=(node.pod_subnet,),
    )


def create_tenant_namespace(plane, name: str, tenant: str) -> None:
    """A namespace of `tenant` (its `wfclock.dev/tenant` label) enforcing Pod Security
    `restricted`, as the operator's tenants are meant to run."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"wfclock.dev/tenant": tenant, **RESTRICTED}},
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(namespace))


def database_for_pods(server: PostgresServer, node: Node, database: str = "wfclock") -> str:
    """A database owned by a login of the operator's own (CREATEROLE, for tenant logins, and no
    superuser), and the URL pods use for it: the node's address, with the login's password.
    The server must listen on `node.host_ip` and ask passwords of `node.pod_subnet`."""
    if node.host_ip not in server.also_listen or node.pod_subnet not in server.password_networks:
        raise ValueError(
            f"Postgres must listen on {node.host_ip} and allow passwords from {node.pod_subnet}: "
            "PostgresServer(also_listen=(node.host_ip,), password_networks=(node.pod_subnet,))"
        )
    password = secrets.token_hex(16)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(OPERATOR_LOGIN), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(OPERATOR_LOGIN)
            )
        )
    return f"postgresql://{OPERATOR_LOGIN}:{password}@{node.host_ip}:{server.port}/{database}"


@dataclass
class OperatorRelease:
    node: Node
    namespace: str
    image: str
    ready_seconds: float = 0.0

    def pods(self) -> list[dict]:
        out = self.node.plane.kubectl(
            "get",
            "pods",
            "-n",
            self.namespace,
            "-l",
            "app.kubernetes.io/component=operator,wfclock.dev/role=active",
            "-o",
            "json",
        )
        return json.loads(out)["items"]

    def pod(self) -> dict | None:
        """The operator's pod when exactly one runs and it is Ready."""
        pods = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != 1:
            return None
        conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
        return pods[0] if conditions.get("Ready") == "True" else None

    def wait_ready(self, timeout: float = 300, other_than: str | None = None) -> dict:
        """Waits for a Ready operator pod (one whose uid is not `other_than`)."""

        def ready():
            pod = self.pod()
            return pod if pod and pod["metadata"]["uid"] != other_than else None

        try:
            return wait_until(ready, timeout, "the operator pod to be Ready", interval=0.5)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe()}") from None

    def describe(self) -> str:
        """What to read when the operator's pod did not come up."""
        kubectl = self.node.plane.kubectl
        pods = kubectl("get", "pods", "-n", self.namespace, "-o", "wide", check=False)
        events = kubectl("get", "events", "-n", self.namespace, check=False)
        logs = kubectl(
            "logs", "-n", self.namespace, f"deployment/{RELEASE}", "--all-containers", check=False
        )
        return f"pods:\n{pods}\nevents:\n{events[-3000:]}\noperator log:\n{logs[-3000:]}"


def install_operator(
    node: Node,
    archive: Path,
    database_url: str,
    *values: str,
    namespace: str = RELEASE_NAMESPACE,
    timeout: float = 300,
) -> OperatorRelease:
    """Imports the image into the node, creates the release namespace (Pod Security restricted)
    with the database Secret, runs `helm install` of the chart with that image, waits for the
    CRD and the operator's pod to be Ready. `values` are extra helm arguments (`--set k=v`)."""
    plane = node.plane
    image = node.import_image(archive)[0]
    repository_, _, tag = image.rpartition(":")
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": RESTRICTED},
            }
        ),
    )
    plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": DATABASE_SECRET},
                "data": {"url": base64.b64encode(database_url.encode()).decode()},
            }
        ),
    )
    started = time.monotonic()
    helm = subprocess.run(
        [
            str(plane.bin / "helm"),
            f"--kubeconfig={plane.kubeconfig}",
            "install",
            RELEASE,
            str(repository() / "charts" / "wfclock"),
            "-n",
            namespace,
            "--set",
            f"image.repository={repository_}",
            "--set",
            f"image.tag={tag}",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            f"apiServer.host={node.api_host}",
            "--set",
            f"apiServer.port={node.api_port}",
            *values,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if helm.returncode != 0:
        raise RuntimeError(f"helm install failed: {helm.stderr.strip()}")
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workflowschedules.wfclock.dev",
        "crd/workflowcalendars.wfclock.dev",
    )
    # The garbage collector and role aggregation learn the chart's kinds and roles at once.
    plane.start_controller_manager()
    release = OperatorRelease(node, namespace, image)
    release.wait_ready(timeout)
    release.ready_seconds = time.monotonic() - started
    return release
