"""The test-side node: runs the unscheduled Pods of Jobs as local processes.

No kubelet runs here. For each Pending, unscheduled Pod matching its label selector, the runner
resolves the container's environment (plain values, downward-API fields, Secret and ConfigMap
keys), runs the container's command and args as a local process with a time limit, keeps the
output, and sets the Pod's phase to Succeeded or Failed through `/status`, so the real Job
controller completes or retries the Job. A Pod it cannot run is reported (in `problems`, in the
log, and as a Failed phase with the reason), never silently ignored.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("wfclock.podrunner")

DEFAULT_SELECTOR = "wfclock.dev/schedule"


class CannotRun(Exception):
    pass


@dataclass
class PodRun:
    namespace: str
    name: str
    job: str | None
    exit_code: int | None
    output: str
    phase: str


class PodRunner:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        selector: str = DEFAULT_SELECTOR,
        namespace: str | None = None,
        time_limit: float = 120,
        workers: int = 8,
    ):
        self.core = client.CoreV1Api(api)
        self.selector = selector
        self.namespace = namespace
        self.time_limit = time_limit
        self.runs: list[PodRun] = []
        self.problems: list[str] = []
        # The fault scenarios' hooks, by namespace: environment added to every pod (a skewed
        # clock with libfaketime), and namespaces whose pods are held Pending (pods that never
        # start) until removed from the set.
        self.extra_env: dict[str, dict[str, str]] = {}
        self.held: set[str] = set()
        # Images whose code is not this checkout's: a container of such an image runs from
        # that folder (its `operator/` and `launcher_job/`), as the image would (the upgrade
        # test's previous release).
        self.code_by_image: dict[str, Path] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pod")
        self._thread = threading.Thread(target=self._watch_loop, name="podrunner", daemon=True)

    # --- lifecycle ---

    def start(self) -> PodRunner:
        self._thread.start()
        return self

    def stop(self, *, drop_queued: bool = False) -> None:
        """Stops watching and waits for the pods being run; with `drop_queued`, pods still
        waiting for a worker are not run (a control plane about to go, after a burst)."""
        self._stop.set()
        self._thread.join(15)
        self._pool.shutdown(wait=True, cancel_futures=drop_queued)

    def runs_for_job(self, job: str) -> list[PodRun]:
        with self._lock:
            return [r for r in self.runs if r.job == job]

    # --- watching ---

    def _list(self, **kw):
        if self.namespace:
            return self.core.list_namespaced_pod(self.namespace, label_selector=self.selector, **kw)
        return self.core.list_pod_for_all_namespaces(label_selector=self.selector, **kw)

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self._list()
                for pod in listing.items:
                    self._consider(pod)
                stream = watch.Watch().stream(
                    self._list_fn(),
                    label_selector=self.selector,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=5,
                )
                for event in stream:
                    if self._stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._consider(event["object"])
            except Exception as exc:  # noqa: BLE001 - keep serving; the API may be restarting
                if not self._stop.is_set():
                    log.warning("pod runner watch error: %s", exc)
                    self._stop.wait(1)

    def _list_fn(self):
        if self.namespace:
            namespace = self.namespace

            def namespaced(**kw):
                return self.core.list_namespaced_pod(namespace, **kw)

            return namespaced
        return self.core.list_pod_for_all_namespaces

    def _consider(self, pod) -> None:
        if pod.spec.node_name or pod.status.phase != "Pending" or pod.metadata.deletion_timestamp:
            return
        if pod.metadata.namespace in self.held:
            return  # seen again by the next listing once released
        with self._lock:
            if pod.metadata.uid in self._seen:
                return
            self._seen.add(pod.metadata.uid)
        self._pool.submit(self._run_pod, pod)

    # --- running ---

    def _run_pod(self, pod) -> None:
        ns, name = pod.metadata.namespace, pod.metadata.name
        job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")
        try:
            argv, env = self.resolve(pod)
        except CannotRun as exc:
            message = f"pod {ns}/{name} cannot run: {exc}"
            log.error(message)
            with self._lock:
                self.problems.append(message)
            self._set_phase(pod, "Failed", None, "PodRunnerCannotRun", str(exc))
            return
        try:
            done = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.time_limit,
                cwd=self._code(pod) or os.getcwd(),
            )
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code = None
            output = f"{exc.stdout or ''}{exc.stderr or ''}\n[pod runner] time limit reached"
        except OSError as exc:
            code, output = 127, f"[pod runner] cannot start {argv[0]}: {exc}"
        phase = "Succeeded" if code == 0 else "Failed"
        log.info("pod %s/%s exited %s -> %s", ns, name, code, phase)
        with self._lock:
            self.runs.append(PodRun(ns, name, job, code, output, phase))
        self._set_phase(pod, phase, code, None, output[-1000:])

    def _set_phase(self, pod, phase: str, code: int | None, reason: str | None, message: str):
        container = pod.spec.containers[0].name
        terminated = {
            "exitCode": code if code is not None else 137,
            "reason": reason or ("Completed" if phase == "Succeeded" else "Error"),
        }
        body = {
            "status": {
                "phase": phase,
                "reason": reason,
                "message": message[-500:] if reason else None,
                "containerStatuses": [
                    {
                        "name": container,
                        "image": pod.spec.containers[0].image or "",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        }
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot set phase of %s: %s", pod.metadata.name, exc.reason)

    def resolve(self, pod) -> tuple[list[str], dict[str, str]]:
        """The local argv and environment of the pod's single container."""
        if pod.spec.init_containers:
            raise CannotRun("init containers are not supported by the pod runner")
        if len(pod.spec.containers) != 1:
            raise CannotRun(
                f"{len(pod.spec.containers)} containers; the pod runner runs exactly one"
            )
        container = pod.spec.containers[0]
        argv = list(container.command or []) + list(container.args or [])
        if not container.command:
            raise CannotRun(
                f"container {container.name!r} has no command (image entrypoints are unknown here)"
            )
        env = {
            "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"),
        }
        for source in container.env_from or []:
            env.update(self._env_from(pod, source))
        for var in container.env or []:
            value = self._env_value(pod, var, env)
            if value is not None:
                env[var.name] = value
        env.update(self.extra_env.get(pod.metadata.namespace, {}))
        code = self._code(pod)
        if code is not None:
            env["PYTHONPATH"] = f"{code / 'operator'}:{code}"
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        elif not os.path.isabs(argv[0]):
            found = shutil.which(argv[0], path=env["PATH"])
            if not found:
                raise CannotRun(f"command {argv[0]!r} not found on this machine")
            argv[0] = found
        return argv, env

    def _code(self, pod) -> Path | None:
        return self.code_by_image.get(pod.spec.containers[0].image or "")

    def _env_value(self, pod, var, env) -> str | None:
        if var.value_from is None:
            return re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var.value or ""
            )
        source = var.value_from
        if source.field_ref:
            return self._field(pod, source.field_ref.field_path)
        if source.secret_key_ref:
            ref = source.secret_key_ref
            return self._key(pod, "secret", ref.name, ref.key, ref.optional, var.name)
        if source.config_map_key_ref:
            ref = source.config_map_key_ref
            return self._key(pod, "configmap", ref.name, ref.key, ref.optional, var.name)
        raise CannotRun(f"env {var.name}: unsupported valueFrom (resourceFieldRef)")

    def _field(self, pod, path: str) -> str:
        meta = pod.metadata
        simple = {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": pod.spec.node_name or "",
            "spec.serviceAccountName": pod.spec.service_account_name or "",
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            values = (meta.labels if match.group(1) == "labels" else meta.annotations) or {}
            if match.group(2) not in values:
                raise CannotRun(f"fieldRef {path}: the pod has no such {match.group(1)[:-1]}")
            return values[match.group(2)]
        raise CannotRun(f"unsupported fieldRef {path}")

    def _data(self, kind: str, name: str, namespace: str) -> dict[str, str]:
        """The decoded data of a Secret or ConfigMap (raises ApiException when unreadable)."""
        if kind == "secret":
            data = self.core.read_namespaced_secret(name, namespace).data or {}
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return self.core.read_namespaced_config_map(name, namespace).data or {}

    def _key(self, pod, kind, name, key, optional, var) -> str | None:
        try:
            value = self._data(kind, name, pod.metadata.namespace).get(key)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            raise CannotRun(
                f"env {var}: {kind} {name!r} not readable ({exc.status} {exc.reason})"
            ) from None
        if value is None and not optional:
            raise CannotRun(f"env {var}: {kind} {name!r} has no key {key!r}")
        return value

    def _env_from(self, pod, source) -> dict[str, str]:
        ref, kind = (
            (source.secret_ref, "secret")
            if source.secret_ref
            else (source.config_map_ref, "configmap")
        )
        if ref is None:
            return {}
        try:
            data = self._data(kind, ref.name, pod.metadata.namespace)
        except ApiException as exc:
            raise CannotRun(
                f"envFrom: {kind} {ref.name!r} not readable ({exc.status} {exc.reason})"
            ) from None
        return {(source.prefix or "") + k: v for k, v in data.items()}
