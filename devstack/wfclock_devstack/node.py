"""A real Kubernetes node on this machine, joined to a started control plane.

The way Kubernetes' hack/local-up-cluster.sh runs one, with everything in a folder of its own:

- containerd with runc: its own root, state and sockets; the CRI plugin with the pause image
  (built from Kubernetes' pause.c, imported from an archive: no registry is reachable) as sandbox
  image and `restrict_oom_score_adj`, without which runc fails every sandbox on this VM ("can't
  get final child's PID from pipe: EOF"); network namespaces under its state folder.
- a pod network that routes nowhere but this machine: a CNI bridge with host-local addresses,
  no gateway, no masquerading, no forwarding; the bridge's own address is the node's address,
  on which pods reach servers of this machine (`host_ip`, the pods' `status.hostIP`).
- the kubelet: cgroup v1 allowed (`failCgroupV1: false`), the cgroupfs driver under a cgroup of
  the node's own, a client certificate for `system:node:<name>` in `system:nodes` signed by the
  control plane's CA, x509 and webhook authentication and webhook authorization for its own API
  (no anonymous access); the API server reaches it on the node's address for logs.
- kube-scheduler, logging in as `system:kube-scheduler`.
- the way its pods reach the API server: a relay on the node's address to the API server on
  127.0.0.1 (`apiproxy`), whose certificate is re-issued to carry that address; pods are told
  with `KUBERNETES_SERVICE_HOST` / `_PORT` = `api_host` / `api_port`.

No kube-proxy: wfclock's pods reach Postgres on a host address, no Service; kube-proxy would also
write the host's firewall. The kubelet runs with a PATH without iptables for the same reason: its
iptables chains exist for kube-proxy. `nodehost` claims and releases what is made on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from wfclock_devstack import certs, nodehost
from wfclock_devstack.controlplane import ControlPlane, write_kubeconfig
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import spawn, terminate, wait_until
from wfclock_devstack.repo import repository

RUNC = "/usr/sbin/runc"


def binaries() -> Path:
    """The folder of the node's pinned binaries and image archives; builds what is missing."""
    script = repository() / "scripts" / "build-node.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def image_names(archive: Path) -> list[str]:
    """The names a docker-archive (`podman save --format docker-archive`) carries."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return [tag for image in manifest for tag in image.get("RepoTags") or []]


@dataclass
class Node:
    plane: ControlPlane
    name: str = field(default_factory=lambda: f"wfclock-node-{secrets.token_hex(3)}")
    # Short: containerd's shim sockets live below it (108 bytes for a socket path).
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wfn-", dir="/tmp")))
    bin: Path = field(default_factory=binaries)
    processes: dict = field(default_factory=dict)
    claim: nodehost.Claim | None = None

    @property
    def host_ip(self) -> str:
        """This machine's address as pods see it (the node's InternalIP)."""
        return self.claim.host_ip

    @property
    def pod_subnet(self) -> str:
        return self.claim.subnet

    @property
    def api_host(self) -> str:
        """Where pods reach the API server (KUBERNETES_SERVICE_HOST): the node's address."""
        return self.claim.host_ip

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    def logs(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def start(self, timeout: float = 120) -> Node:
        started = time.monotonic()
        missing = [p for p in (RUNC, shutil.which("ip")) if not p or not os.access(p, os.X_OK)]
        if missing or os.geteuid() != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(
                f"a node needs root, runc at {RUNC} and iproute2's ip (missing: {missing}, "
                f"uid {os.geteuid()}); scripts/build-node.sh installs the packages"
            )
        self.claim = nodehost.claim(self.name, self.root)
        try:
            self._write_credentials()
            self._start_containerd()
            self.import_image(self.bin / "pause.tar")
            self._start_kubelet()
            self._start_scheduler()
            self._start_api_proxy()
            wait_until(self._ready, timeout, f"node {self.name} to be Ready", interval=0.5)
            nodehost.kubelet_started()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    # --- containerd ----------------------------------------------------------------------------

    def _start_containerd(self) -> None:
        state = self.root / "containerd" / "state"
        cni = self.root / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-wfclock.conflist").write_text(json.dumps(self._cni_config(), indent=2))
        sandbox = image_names(self.bin / "pause.tar")[0]
        config = f"""\
version = 4
root = "{self.root / "containerd" / "root"}"
state = "{state}"
imports = []
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.image-verifier.v1.bindir",
]

[plugins."io.containerd.server.v1.grpc"]
  address = "{self.containerd_socket}"

[plugins."io.containerd.server.v1.ttrpc"]
  address = "{self.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root / "containerd" / "opt"}"

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "{self.root / "s"}"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{sandbox}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = false

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{self.bin / "cni"}"]
  conf_dir = "{cni / "net.d"}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        (self.root / "containerd.toml").write_text(config)
        self.processes["containerd"] = spawn(
            [str(self.bin / "containerd"), "--config", str(self.root / "containerd.toml")],
            self.logs("containerd"),
            env=self._env(),
            before_exec=nodehost.joining(f"{self.claim.cgroup}/node"),
        )
        wait_until(
            lambda: self._check_alive() or self.ctr("version", check=False).count("Version") == 2,
            30,
            "containerd to answer",
            interval=0.2,
        )

    def _cni_config(self) -> dict:
        host = self.claim.host_ip
        return {
            "cniVersion": "1.0.0",
            "name": "wfclock",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.claim.bridge,
                    # The bridge and its address are the node's own (nodehost); pods get no
                    # default route and this machine forwards nothing for them.
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.root / "cni" / "ipam"),
                        "ranges": [[{"subnet": self.claim.subnet, "gateway": host}]],
                    },
                }
            ],
        }

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        result = subprocess.run(
            [
                str(self.bin / "ctr"),
                "--address",
                str(self.containerd_socket),
                "-n",
                "k8s.io",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout if check else result.stdout + result.stderr

    def import_image(self, archive: Path) -> list[str]:
        """Imports a docker-archive into the node's containerd; returns the image names."""
        names = image_names(archive)
        if not names:
            raise ValueError(f"{archive} names no image (save it with a tag)")
        self.ctr("images", "import", str(archive), timeout=300)
        return names

    # --- kubelet and scheduler -----------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki, ca = self.root / "pki", self.plane.files
        for user, cn, org in (
            ("kubelet", f"system:node:{self.name}", "system:nodes"),
            ("scheduler", "system:kube-scheduler", None),
        ):
            cert, key = certs.issue_client(ca, pki, user, cn, org)
            write_kubeconfig(
                self.root / f"{user}.kubeconfig", self.plane.url, ca["ca.crt"], cert, key, user
            )

    def _env(self) -> dict:
        # No /usr/sbin: the kubelet finds no iptables and leaves the host's firewall alone.
        return {**os.environ, "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin"}

    def _start_kubelet(self) -> None:
        self.kubelet_port, healthz = free_port(), free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.claim.cgroup,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": self.host_ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.files["ca.crt"])},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.root / "pod-logs"),
            "volumePluginDir": str(self.root / "volume-plugins"),
            "resolvConf": "/etc/resolv.conf",
            "failSwapOn": False,
            # Images arrive by import only: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # A shared development machine: evict only when it is really out of room.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
        }
        (self.root / "kubelet.yaml").write_text(json.dumps(config, indent=2))
        self.processes["kubelet"] = spawn(
            [
                str(self.bin / "kubelet"),
                f"--config={self.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.root / 'kubelet.kubeconfig'}",
                f"--root-dir={self.root / 'kubelet'}",
                f"--cert-dir={self.root / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.host_ip}",
                "--v=1",
            ],
            self.logs("kubelet"),
            env=self._env(),
            before_exec=nodehost.joining(f"{self.claim.cgroup}/node"),
        )

    def _start_scheduler(self) -> None:
        port = free_port()
        config = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(self.root / "scheduler.kubeconfig")},
            "leaderElection": {"leaderElect": False},
        }
        (self.root / "scheduler.yaml").write_text(json.dumps(config, indent=2))
        kubeconfig = str(self.root / "scheduler.kubeconfig")
        self.processes["kube-scheduler"] = spawn(
            [
                str(self.bin / "kube-scheduler"),
                f"--config={self.root / 'scheduler.yaml'}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.root / 'scheduler-pki'}",
            ],
            self.logs("kube-scheduler"),
            env=self._env(),
            before_exec=nodehost.joining(f"{self.claim.cgroup}/node"),
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

        def ready() -> bool:
            self._check_alive()
            url = f"https://127.0.0.1:{port}/readyz"
            return urllib.request.urlopen(url, context=insecure, timeout=2).status == 200

        wait_until(ready, 30, "kube-scheduler /readyz", interval=0.2)

    def _start_api_proxy(self) -> None:
        """Pods reach the API server at `api_host:api_port`: a relay there (no kube-proxy, no
        firewall rule), and the API server's certificate valid for that address."""
        self.api_port = free_port(self.host_ip)
        self.processes["apiproxy"] = spawn(
            [
                sys.executable,
                "-m",
                "wfclock_devstack.apiproxy",
                self.host_ip,
                str(self.api_port),
                str(self.plane.api_port),
            ],
            self.logs("apiproxy"),
            before_exec=nodehost.joining(f"{self.claim.cgroup}/node"),
        )
        self.plane.serve_address(self.host_ip)
        context = ssl.create_default_context(cafile=str(self.plane.files["ca.crt"]))

        def relayed() -> bool:
            self._check_alive()
            address = (self.host_ip, self.api_port)
            with (
                socket.create_connection(address, timeout=3) as sock,
                context.wrap_socket(sock, server_hostname=self.host_ip),
            ):
                return True

        wait_until(relayed, 30, "the API server through the node's relay", interval=0.2)

    def _ready(self) -> bool:
        self._check_alive()
        node = json.loads(self.plane.kubectl("get", "node", self.name, "-o", "json"))
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        taints = [t["key"] for t in node["spec"].get("taints", [])]
        return conditions.get("Ready") == "True" and not taints

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = self.logs(name).read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}; log tail:\n{tail}")

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops the node and removes all it made: processes (shims included), mounts, cgroups,
        the bridge, its folder; and its Node object and pods, when the API server still runs."""
        if self.claim is None:
            return
        for name in ("apiproxy", "kube-scheduler", "kubelet"):
            terminate(self.processes.pop(name, None))
        if self.processes.get("containerd") and self.processes["containerd"].poll() is None:
            self._delete_tasks()
        terminate(self.processes.pop("containerd", None))
        self._forget()
        nodehost.release(self.claim)
        self.claim = None

    def _delete_tasks(self) -> None:
        for task in self.ctr("tasks", "list", "--quiet", check=False).split():
            self.ctr("tasks", "delete", "--force", task, check=False)

    def _forget(self) -> None:
        apiserver = self.plane.processes.get("kube-apiserver")
        if apiserver is None or apiserver.poll() is not None:
            return
        # Hundreds of finished pods (the soak's) can outlast kubectl's two minutes; the control
        # plane that holds them is removed next, so the node's stop goes on without them.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.plane.kubectl(
                "delete",
                "pods",
                "--all-namespaces",
                f"--field-selector=spec.nodeName={self.name}",
                "--force",
                "--grace-period=0",
                "--request-timeout=20s",
                check=False,
            )
        self.plane.kubectl(
            "delete", "node", self.name, "--ignore-not-found", "--request-timeout=20s", check=False
        )
