"""The local stack: `make up`, `make down`, `make demo`.

`up` starts a supervisor in the background that owns the local control plane, a real node
(containerd, kubelet, kube-scheduler), Postgres listening for the node's pods, and the operator
as the chart installs it: `helm install` with the image `make image` builds, its pod run by the
kubelet (`podstack`). Every fire is a launcher container the kubelet runs from the same image. It
writes `.wfclock/env` once the operator's pod is Ready. `down` stops the supervisor, which stops
and removes everything it started (the node's network, cgroups and mounts included). `demo`
applies example schedules and shows their fires and runs as they happen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

STATE = Path(os.environ.get("WFCLOCK_STATE_DIR", Path.cwd() / ".wfclock"))
PIDFILE = STATE / "supervisor.pid"
ENVFILE = STATE / "env"
# What the stack made outside its folder (the node's claim, Postgres' folder), for checks.
MADE = STATE / "made.json"
DEMO_NAMESPACE = "demo"
DEMO_TENANT = "demo"
SYSTEM_NAMESPACE = "wfclock-system"


def alive(pid: int) -> bool:
    """Whether `pid` still runs. A zombie does not: the supervisor is nobody's child once `up`
    exits, and where the machine's first process does not reap orphans it stays a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _running_pid() -> int | None:
    if PIDFILE.exists():
        pid = int(PIDFILE.read_text().strip() or 0)
        if pid and alive(pid):
            return pid
    return None


def up() -> int:
    if _running_pid():
        print(f"wfclock local stack already running; `source {ENVFILE}` to use it")
        return 0
    STATE.mkdir(parents=True, exist_ok=True)
    ENVFILE.unlink(missing_ok=True)
    log = (STATE / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfclock_devstack.localstack", "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    PIDFILE.write_text(str(proc.pid))
    started = time.monotonic()
    print(
        "starting etcd, kube-apiserver, kube-controller-manager, a node (containerd, kubelet, "
        "kube-scheduler), Postgres, and the operator's pod (helm install) ..."
    )
    while not ENVFILE.exists():
        if proc.poll() is not None:
            print(
                f"the local stack failed to start; see {STATE / 'supervisor.log'}", file=sys.stderr
            )
            print((STATE / "supervisor.log").read_text()[-3000:], file=sys.stderr)
            return 1
        if time.monotonic() - started > 600:
            print("the local stack did not become ready within 10 minutes", file=sys.stderr)
            return 1
        time.sleep(0.5)
    log_lines = (STATE / "supervisor.log").read_text(errors="replace").splitlines()
    print(next((line for line in reversed(log_lines) if "local stack ready" in line), ""))
    print(f"ready in {time.monotonic() - started:.1f}s. Use it with: source {ENVFILE}")
    print(ENVFILE.read_text())
    return 0


def down() -> int:
    pid = _running_pid()
    if pid is None:
        print("wfclock local stack is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
        time.sleep(1)
        from wfclock_devstack import nodehost

        nodehost.release_stale()  # what the killed supervisor's node left on the machine
    PIDFILE.unlink(missing_ok=True)
    ENVFILE.unlink(missing_ok=True)
    MADE.unlink(missing_ok=True)
    print("wfclock local stack stopped")
    return 0


def serve() -> int:
    """The supervisor: owns every process of the stack; SIGTERM tears it all down."""
    from wfclock_devstack import podstack
    from wfclock_devstack.controlplane import ControlPlane
    from wfclock_devstack.node import Node
    from wfclock_devstack.processes import terminate

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # The local stack is ephemeral: every `make up` starts from empty data. Postgres lives in a
    # temporary folder, which its server user can reach wherever the checkout is.
    shutil.rmtree(STATE / "kube", ignore_errors=True)
    archive = podstack.build_image()
    plane = ControlPlane(root=STATE / "kube")
    node = postgres = console = None
    try:
        plane.start()
        node = Node(plane).start()
        # Pods reach Postgres on the node's address, with a password.
        postgres = podstack.postgres_for(node)
        postgres.start()
        MADE.write_text(json.dumps({"node": vars(node.claim), "postgres": str(postgres.root)}))
        pod_url = podstack.database_for_pods(postgres, node, "wfclock")
        podstack.create_tenant_namespace(plane, DEMO_NAMESPACE, DEMO_TENANT)
        # The demo fires every minute; production keeps the 5-minute default.
        minimum = os.environ.get("WFCLOCK_MINIMUM_INTERVAL_MINUTES", "1")
        release = podstack.install_operator(
            node,
            archive,
            pod_url,
            "--set",
            f"minimumIntervalMinutes={minimum}",
            namespace=SYSTEM_NAMESPACE,
        )
        plane.wait_schedules_admitted(DEMO_NAMESPACE, DEMO_TENANT)
        # The console as a local process (migrations are in: the operator's init step ran).
        from kubernetes import config

        from wfclock_devstack.console import start_console

        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        console, console_url, console_token = start_console(
            api,
            postgres.url("wfclock"),
            plane.kubeconfig,
            DEMO_NAMESPACE,
            STATE / "logs" / "console.log",
        )
        lines = {
            "WFCLOCK_CONSOLE_URL": console_url,
            "WFCLOCK_CONSOLE_TOKEN_COMMAND": console_token,
            "KUBECONFIG": str(plane.kubeconfig),
            # The administrator's view of the operator's database, over the loopback.
            "WFCLOCK_DATABASE_URL": postgres.url("wfclock"),
            "WFCLOCK_NAMESPACE": DEMO_NAMESPACE,
            "WFCLOCK_TENANT": DEMO_TENANT,
            "PATH": f"{plane.bin}:{Path(sys.executable).parent}:$PATH",
        }
        ENVFILE.write_text("".join(f'export {k}="{v}"\n' for k, v in lines.items()))
        print(
            f"local stack ready: control plane in {plane.ready_seconds:.1f}s, node "
            f"{node.name} in {node.ready_seconds:.1f}s, helm install to operator pod Ready "
            f"in {release.ready_seconds:.1f}s",
            flush=True,
        )
        while not stop.wait(1):
            pass
        return 0
    finally:
        ENVFILE.unlink(missing_ok=True)
        teardown(
            ("the console", lambda: terminate(console)),
            ("the node", node and node.stop),
            ("the control plane", plane.remove),
            ("Postgres", postgres and postgres.stop),
            (
                "Postgres's folder",
                postgres and (lambda: shutil.rmtree(postgres.root, ignore_errors=True)),
            ),
        )


def teardown(*steps) -> None:
    """Runs every (what, step) in order, a step that fails included: one that raises (a node
    whose pods' delete timed out) must not leave the steps after it undone, such as a Postgres
    server outliving `make down`. A step of None was never started."""
    for what, step in steps:
        if step is None:
            continue
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported; the next part must still stop
            print(f"stopping {what} failed: {exc!r}", file=sys.stderr, flush=True)


def demo() -> int:
    """Applies a recurring and a one-time schedule and shows their fires as they happen."""
    from wfclock_devstack.controlplane import binaries
    from wfclock_devstack.repo import repository

    if not ENVFILE.exists():
        print("the local stack is not running; run `make up` first", file=sys.stderr)
        return 1
    env = dict(os.environ)
    for line in ENVFILE.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip('"').replace("$PATH", os.environ.get("PATH", ""))
    kubectl = [str(binaries() / "kubectl"), "-n", DEMO_NAMESPACE]
    run_at = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    manifests = (
        (repository() / "examples" / "demo-schedules.yaml")
        .read_text()
        .replace("RUN_AT", run_at.isoformat().replace("+00:00", "Z"))
    )
    applied_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifests, text=True, env=env, check=True)
    print(
        f"\napplied: 'every-minute' (recurring, * * * * * in Europe/Berlin) and 'in-20-seconds' (one-time at {run_at:%H:%M:%S}Z)"
    )
    print(
        f"console: {env.get('WFCLOCK_CONSOLE_URL')} (sign in with the token of "
        f"`{env.get('WFCLOCK_CONSOLE_TOKEN_COMMAND')}`)"
    )
    print("watching fires and runs (Ctrl-C to stop; the stack keeps running until `make down`)\n")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            schedules = subprocess.run(
                [*kubectl, "get", "wfs"], capture_output=True, text=True, env=env
            ).stdout
            runs = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "wfclock.cli",
                    "runs",
                    "list",
                    "--tenant",
                    DEMO_TENANT,
                    "--json",
                ],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            kinds = {
                r["trigger_type"]
                for r in json.loads(runs or "[]")
                if r["created_at"] >= applied_at  # only runs of the schedules just applied
            }
            print(f"--- {datetime.now(UTC):%H:%M:%S}Z\n{schedules}")
            subprocess.run(
                [sys.executable, "-m", "wfclock.cli", "runs", "list", "--tenant", DEMO_TENANT],
                env=env,
            )
            if {"recurring", "schedule"} <= kinds:
                print("\nthe schedules with their recent fires (`kubectl get wfs -o wide`):")
                subprocess.run([*kubectl, "get", "wfs", "-o", "wide"], env=env)
                _show_containers(kubectl, env)
                print("\nboth schedules fired, one run per fire. `make down` stops the stack.")
                return 0
            time.sleep(10)
    except KeyboardInterrupt:
        return 0
    print(
        "no fire of both schedules within 4 minutes; see `kubectl get pods -A` and "
        f"`kubectl logs -n {SYSTEM_NAMESPACE} deployment/wfclock` (after `source {ENVFILE}`)",
        file=sys.stderr,
    )
    return 1


def _show_containers(kubectl: list[str], env: dict) -> None:
    """The fires' launcher pods, and the containers the kubelet ran for them."""
    selector = ["-l", "wfclock.dev/schedule"]
    print("\nthe fires' launcher pods, run by the kubelet on the local node:")
    subprocess.run([*kubectl, "get", "pods", *selector, "-o", "wide"], env=env)
    pods = json.loads(
        subprocess.run(
            [*kubectl, "get", "pods", *selector, "-o", "json"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        or '{"items": []}'
    )["items"]
    for pod in pods:
        for status in pod["status"].get("containerStatuses") or []:
            if status.get("containerID"):
                print(
                    f"  {pod['metadata']['name']}: container {status['containerID'][:25]}... "
                    f"of {status['image']}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m wfclock_devstack.localstack")
    parser.add_argument("command", choices=["up", "down", "serve", "demo"])
    return {"up": up, "down": down, "serve": serve, "demo": demo}[parser.parse_args().command]()


if __name__ == "__main__":
    sys.exit(main())
