"""Shared set-up for the cluster benchmarks: control plane, Postgres, the operator as a process."""

from __future__ import annotations

import base64
import collections
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from kubernetes import client, config
from wfclock.db.migrate import upgrade
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.ports import free_port
from wfclock_devstack.postgres import temporary_server
from wfclock_devstack.processes import spawn, terminate

NAMESPACE = "bench"
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


@contextlib.contextmanager
def stack():
    pg = temporary_server()
    pg.start()
    plane = ControlPlane().start()
    try:
        url = pg.create_database("bench")
        upgrade(url)
        plane.install_crds()
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        core = client.CoreV1Api(api)
        core.create_namespace(
            {"metadata": {"name": NAMESPACE, "labels": {"wfclock.dev/tenant": "bench"}}}
        )
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "wfclock-database"},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            },
        )
        yield plane, api, url
    finally:
        plane.remove()
        pg.discard()  # the server and its temporary folder


@contextlib.contextmanager
def operator(plane, url, log: Path, **extra_env: str):
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "WFCLOCK_DATABASE_URL": url,
        "WFCLOCK_METRICS_PORT": "0",
        "WFCLOCK_HEALTH_PORT": str(free_port()),  # kopf reads port 0 as 80
        "WFCLOCK_LOG_LEVEL": "warning",
        "WFCLOCK_NAMESPACES": f'["{NAMESPACE}"]',
        "MALLOC_ARENA_MAX": "2",  # as the image and the chart run it
        **extra_env,
    }
    profile = (
        ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
        if os.environ.get("BENCH_PROFILE")
        else []
    )
    proc = spawn([sys.executable, *profile, "-m", "wfclock.controller"], log, env=env)
    try:
        yield proc
    finally:
        terminate(proc)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    """The process's resident high-water mark so far (the kernel's VmHWM)."""
    return rss_mib(pid, "VmHWM")


# For the benchmarks that fire thousands at once against bare CronJobs, which have no starting
# deadline: wfclock's default of 300 s would turn a minute the controller needs longer for
# (4,000 Jobs at about 8 a second) into skipped fires.
BURST_DEADLINE = {"startingDeadlineSeconds": 3600}


def schedule(name: str, trigger: dict, **spec) -> dict:
    return {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {
            "tenant": "bench",
            "workflowId": WORKFLOW,
            "workflowVersion": 1,
            "trigger": trigger,
            **spec,
        },
    }


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds of a process, its children that ended, and its children alive now."""
    fields = Path(f"/proc/{root}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == root:
                total += cpu_seconds(int(stat.parent.name))
    return total


def postgres_cpu(url: str) -> float:
    """CPU seconds used so far by the Postgres server behind `url` (every backend included)."""
    with psycopg.connect(url) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
    return tree_cpu(int((Path(data) / "postmaster.pid").read_text().split()[0]))


def plane_cpu(plane) -> float:
    """CPU seconds used so far by etcd, kube-apiserver and kube-controller-manager together."""
    return sum(cpu_seconds(p.pid) for p in plane.processes.values())


def api_requests(api) -> collections.Counter:
    """The API server's own count of requests so far, by (verb, resource, subresource)."""
    text = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        response_type="str",
    )[0].data.decode()
    counts: collections.Counter = collections.Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels.get("verb"), labels.get("resource"), labels.get("subresource") or "")
            counts[key] += float(line.rsplit(" ", 1)[1])
    return counts
