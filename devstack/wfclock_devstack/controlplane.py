"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager.

The way controller-runtime's envtest runs one, plus the controllers wfclock relies on (CronJob,
Job, garbage collector, namespace, TTL). No kubelet of its own: Pods stay unscheduled and the pod
runner (`podrunner.py`) plays the node for wfclock's Jobs, unless a real node (`node.py`) joins:
for that the API server authorizes kubelets (Node authorizer, NodeRestriction) and reaches them
with a client certificate, and the node-lifecycle controller lifts the not-ready taint that
admission puts on every new Node.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from wfclock_devstack import certs
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate, wait_until
from wfclock_devstack.repo import repository

CONTROLLERS = (
    "cronjob-controller,job-controller,garbage-collector-controller,"
    "namespace-controller,ttl-after-finished-controller,clusterrole-aggregation-controller,"
    "node-lifecycle-controller,"
    # The chart's operator is a Deployment.
    "deployment-controller,replicaset-controller,"
    # Every namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap: what the
    # ServiceAccount admission plugin and a pod's token volume need.
    "serviceaccount-controller,root-ca-certificate-publisher-controller"
)


def binaries() -> Path:
    """The folder of pinned binaries; builds them first when one is missing (cached)."""
    script = repository() / "scripts" / "build-control-plane.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def write_kubeconfig(
    path: Path, server: str, ca: Path, cert: Path, key: Path, user: str = "admin"
) -> Path:
    """A kubeconfig for `server` that logs in as `user` with a client certificate."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "wfclock-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "wfclock-local", "context": {"cluster": "wfclock-local", "user": user}}
        ],
        "current-context": "wfclock-local",
    }
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass
class ControlPlane:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wfclock-kube-")))
    bin: Path = field(default_factory=binaries)
    etcd_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: dict = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def logs(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def start(self, *, controller_manager: bool = True) -> ControlPlane:
        started = time.monotonic()
        self.files = certs.generate(self.root / "pki")
        self._write_kubeconfig()
        self._start_etcd()
        self._start_apiserver()
        if controller_manager:
            self.start_controller_manager()
        self.ready_seconds = time.monotonic() - started
        return self

    def _start_etcd(self) -> None:
        self.processes["etcd"] = spawn(
            [
                str(self.bin / "etcd"),
                "--data-dir",
                str(self.root / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                "http://127.0.0.1:0",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            self.logs("etcd"),
        )
        wait_until(
            lambda: (
                json.load(
                    urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2)
                )["health"]
                == "true"
            ),
            30,
            "etcd /health",
        )

    def _start_apiserver(self) -> None:
        f = self.files
        self.processes["kube-apiserver"] = spawn(
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.root / 'pki'}",
                f"--tls-cert-file={f['apiserver.crt']}",
                f"--tls-private-key-file={f['apiserver.key']}",
                f"--client-ca-file={f['ca.crt']}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={f['sa.pub']}",
                f"--service-account-signing-key-file={f['sa.key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # ServiceAccount (on by default) gives pods their account's token volume.
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={f['kubelet-client.crt']}",
                f"--kubelet-client-key={f['kubelet-client.key']}",
                # A node's name is no host name here; its InternalIP is an address of this machine.
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-priority-and-fairness=false",
            ],
            self.logs("kube-apiserver"),
        )
        self.wait_apiserver_ready()

    def wait_apiserver_ready(self, timeout: float = 60) -> None:
        f = self.files
        context = ssl.create_default_context(cafile=str(f["ca.crt"]))
        context.load_cert_chain(f["admin.crt"], f["admin.key"])

        def ready() -> bool:
            self._check_alive()
            return (
                urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=3).status
                == 200
            )

        wait_until(ready, timeout, "kube-apiserver /readyz", interval=0.25)

    def restart_apiserver(self, down: float = 0) -> float:
        """Stops kube-apiserver (SIGTERM), keeps it down `down` seconds, starts it again with the
        same address and certificates; returns the seconds from the stop to /readyz."""
        stopped = time.monotonic()
        terminate(self.processes.pop("kube-apiserver", None))
        time.sleep(down)
        self._start_apiserver()
        return time.monotonic() - stopped

    def restart_etcd(self, down: float = 0) -> float:
        """Stops etcd (SIGTERM), keeps it down `down` seconds, starts it on the same data and
        port; returns the seconds from the stop until the API server is ready again."""
        stopped = time.monotonic()
        terminate(self.processes.pop("etcd", None))
        time.sleep(down)
        self._start_etcd()
        self.wait_apiserver_ready()
        return time.monotonic() - stopped

    def start_controller_manager(self) -> None:
        """Start (or restart) it; restart after installing CRDs so the GC discovers them at once."""
        terminate(self.processes.get("kube-controller-manager"))
        self.processes["kube-controller-manager"] = spawn(
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={CONTROLLERS}",
                "--concurrent-cron-job-syncs=5",
                "--concurrent-job-syncs=5",
            ],
            self.logs("kube-controller-manager"),
        )
        time.sleep(0.5)
        self._check_alive()

    def install_crds(self, path: Path | None = None) -> None:
        """Applies the CRDs and the admission policy that puts wfclock's finalizer on new
        schedules (as the chart does), waits until the CRDs are served, and restarts the
        controller-manager so its garbage collector knows the new kinds at once (it re-reads
        discovery only every 30 s).
        """
        self.kubectl(
            "apply",
            "-f",
            str(path or repository() / "crds"),
            "-f",
            str(repository() / "deploy" / "admission"),
        )
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workflowschedules.wfclock.dev",
            "crd/workflowcalendars.wfclock.dev",
        )
        self.wait_schedules_admitted()
        self.start_controller_manager()

    def wait_schedules_admitted(self, namespace: str = "default", tenant: str = "probe") -> None:
        """Established is not yet usable: admission resolves a new kind's schema a moment later
        (503 until then), and each served version on its own (v1beta1 was once refused after
        v1alpha1 was admitted). Waits for a server-side dry run in every served version that
        comes back with the finalizer. Where the tenant policy is installed, name a namespace
        and its tenant."""
        versions = self.kubectl(
            "get",
            "crd/workflowschedules.wfclock.dev",
            "-o",
            "jsonpath={.spec.versions[?(@.served==true)].name}",
        ).split()
        for version in versions:
            wait_until(
                lambda version=version: self._schedules_admitted(namespace, tenant, version),
                60,
                f"WorkflowSchedules in {version} to be admitted",
                interval=0.2,
            )

    def _schedules_admitted(self, namespace: str, tenant: str, version: str) -> bool:
        probe = {
            "apiVersion": f"wfclock.dev/{version}",
            "kind": "WorkflowSchedule",
            "metadata": {"name": "admission-probe", "namespace": namespace},
            "spec": {
                "tenant": tenant,
                "workflowId": "00000000-0000-4000-8000-000000000000",
                "workflowVersion": 1,
                "trigger": {"type": "recurring", "cron": "0 3 * * *", "timezone": "UTC"},
            },
        }
        out = self.kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(probe),
            check=False,
        )
        try:
            return "wfclock.dev/finalizer" in json.loads(out)["metadata"].get("finalizers", [])
        except ValueError:
            return False

    def serve_address(self, address: str, timeout: float = 90) -> None:
        """Makes the API server's certificate valid for `address` too (a node's address, on which
        its pods reach the API server through the node's proxy), and waits until the API server
        serves it: it reloads its serving certificate from disk, without a restart."""
        certs.add_serving_address(self.files, "apiserver", address)
        context = ssl.create_default_context(cafile=str(self.files["ca.crt"]))

        def served() -> bool:
            self._check_alive()
            with (
                socket.create_connection(("127.0.0.1", self.api_port), timeout=3) as sock,
                context.wrap_socket(sock, server_hostname=address),
            ):
                return True

        wait_until(served, timeout, f"the API server's certificate for {address}", interval=0.5)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = self.logs(name).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}; log tail:\n{tail}")

    def _write_kubeconfig(self) -> None:
        f = self.files
        write_kubeconfig(self.kubeconfig, self.url, f["ca.crt"], f["admin.crt"], f["admin.key"])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout if check else result.stdout + result.stderr

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            terminate(self.processes.pop(name, None))

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
