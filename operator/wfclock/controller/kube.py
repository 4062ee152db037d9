"""Thin wrappers over the Kubernetes client: create-if-absent, patch, delete, events, status."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.rest import ApiException

from wfclock.core.builders import DIGEST_ANNOTATION
from wfclock.core.fires import utc_iso
from wfclock.core.model import API_GROUP, API_VERSION, KIND, PLURAL
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL, TENANT_LABEL

log = logging.getLogger("wfclock.operator")

# The Jobs the CronJob controller makes from wfclock's CronJobs (their jobTemplate's labels).
FIRE_JOB_SELECTOR = f"app.kubernetes.io/managed-by=wfclock,{REGISTRATION_LABEL}=recurring-fire"


# Objects a list request returns at most (kopf lists its watched resources 500 at a time too).
LIST_PAGE = 500


def slim_child(body: dict) -> dict:
    """What the resync judges a child by: its identity, labels and age, and the spec fields of
    drift (`wfclock.core.drift`); the rest of the object is dropped as each page is read."""
    meta, spec = body["metadata"], body.get("spec") or {}
    return {
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "labels", "creationTimestamp")
            if key in meta
        },
        "spec": {key: spec[key] for key in ("suspend", "schedule", "timeZone") if key in spec},
    }


class TimedApiClient(client.ApiClient):
    """An API client whose requests give up after `timeout` (connect, read) seconds unless a
    call sets its own: a half-open connection fails the call (a temporary error, retried)
    instead of holding a worker, and the look-up others wait for, forever."""

    def __init__(self, configuration=None, timeout: tuple[float, float] = (10, 60)):
        super().__init__(configuration)
        self.timeout = timeout

    def request(self, method, url, *args, _request_timeout=None, **kwargs):
        timeout = _request_timeout or self.timeout
        return super().request(method, url, *args, _request_timeout=timeout, **kwargs)


class Kube:
    def __init__(self, api: client.ApiClient, cache_seconds: float = 10):
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self._tenants: dict[str, tuple[float, str | None]] = {}
        self._notices = ThreadPoolExecutor(1, thread_name_prefix="events")
        self._ttl = cache_seconds
        # What ensure_secret last saw, and when: trusted as long as a tenant label, so a Secret
        # deleted by hand, or gone with its namespace, is noticed within that time too.
        self._secrets: dict[tuple[str, str], tuple[float, str]] = {}
        # One look-up at a time per namespace or Secret: a burst of first registrations in a
        # namespace (16 at once from an apply) reads and writes its Secret once, not 16 times.
        self._keyed = defaultdict(threading.Lock)
        self._keyed_guard = threading.Lock()

    # --- children ---

    def owned(self, namespace: str, uid: str) -> tuple[list, list]:
        selector = f"{SCHEDULE_UID_LABEL}={uid}"
        cronjobs = self.batch.list_namespaced_cron_job(namespace, label_selector=selector).items
        jobs = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return cronjobs, jobs

    def list_children(self, namespaces: list[str]) -> tuple[dict, dict]:
        """Every CronJob and Job wfclock made, by (namespace, name), in the given namespaces
        (empty: all), read in pages and each kept slim (`slim_child`): what drift and staleness
        are judged by, not the whole object, so a resync over 20,000 schedules and their fire
        Jobs holds one page of whole objects at a time."""
        selector = "app.kubernetes.io/managed-by=wfclock"

        def by_name(namespaced, everywhere):
            return {
                (item["metadata"]["namespace"], item["metadata"]["name"]): slim_child(item)
                for item in self._paged(namespaced, everywhere, namespaces, selector)
            }

        return (
            by_name(
                self.batch.list_namespaced_cron_job, self.batch.list_cron_job_for_all_namespaces
            ),
            by_name(self.batch.list_namespaced_job, self.batch.list_job_for_all_namespaces),
        )

    def child_digests(self, namespaces: list[str]) -> dict:
        """{(kind, namespace, name): registration digest} of every CronJob and one-time Job
        wfclock made, in the given namespaces (empty: all), read in pages; only names and one
        annotation are kept, whatever the number of children. The Jobs the CronJobs made are
        left out: no resume asks for them, and they are up to four a recurring schedule."""
        selector = "app.kubernetes.io/managed-by=wfclock," + REGISTRATION_LABEL
        found: dict[tuple[str, str, str], str] = {}
        for kind, registration, namespaced, everywhere in (
            (
                "CronJob",
                "recurring",
                self.batch.list_namespaced_cron_job,
                self.batch.list_cron_job_for_all_namespaces,
            ),
            (
                "Job",
                "one-time",
                self.batch.list_namespaced_job,
                self.batch.list_job_for_all_namespaces,
            ),
        ):
            for item in self._paged(
                namespaced, everywhere, namespaces, f"{selector}={registration}"
            ):
                meta = item["metadata"]
                digest = (meta.get("annotations") or {}).get(DIGEST_ANNOTATION, "")
                found[(kind, meta["namespace"], meta["name"])] = digest
        return found

    def _paged(
        self,
        namespaced,
        everywhere,
        namespaces: list[str],
        selector: str,
        page: int | None = None,
        **kwargs,
    ) -> Iterator[dict]:
        """A list call's items as plain dicts (the raw JSON, no client models), in the given
        namespaces (empty: all, by `everywhere`), read `page` (default `LIST_PAGE`) at a time:
        one page of whole objects is held at once, whatever their number."""
        for namespace in namespaces or [None]:
            fn, args = (namespaced, (namespace,)) if namespace else (everywhere, ())
            token = None
            while True:
                more = {"_continue": token} if token else {}
                response = fn(
                    *args,
                    label_selector=selector,
                    limit=page or LIST_PAGE,
                    _preload_content=False,
                    **more,
                    **kwargs,
                )
                try:
                    listed = json.loads(response.data)
                finally:
                    response.release_conn()
                yield from listed["items"]
                token = listed["metadata"].get("continue")
                if not token:
                    break

    def create_or_patch_cronjob(self, body: dict) -> str:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self._write(self.batch.create_namespaced_cron_job, ns, body)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        # In place: one write, same UID, so the controller keeps its fire history.
        self._write(self.batch.patch_namespaced_cron_job, name, ns, body)
        return "updated"

    def create_job_if_absent(self, body: dict) -> bool:
        ns = body["metadata"]["namespace"]
        try:
            self._write(self.batch.create_namespaced_job, ns, body)
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return False

    def suspend_cronjob(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self._write,
            self.batch.patch_namespaced_cron_job,
            name,
            namespace,
            {"spec": {"suspend": True}},
        )

    def release_job(self, namespace: str, name: str) -> bool:
        """Un-suspends a one-time Job; False when it no longer exists."""
        try:
            self._write(
                self.batch.patch_namespaced_job, name, namespace, {"spec": {"suspend": False}}
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def job_active(self, namespace: str, name: str) -> bool:
        """Whether the Job exists, is released and has not finished (it may still deliver)."""
        job = self._ignore_404(self.batch.read_namespaced_job, name, namespace)
        if job is None or job.spec.suspend:
            return False
        conditions = job.status.conditions or []
        return not any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)

    def active_fire_jobs(self, namespaces: list[str], page: int = 100) -> set[tuple[str, str]]:
        """(namespace, name) of every Job a wfclock CronJob made that is active as `job_active`
        tells it (released, not finished), in `namespaces` (empty: all): one paged list a
        namespace (or one for all), read as JSON keeping names and state only."""
        return {
            (job["metadata"]["namespace"], job["metadata"]["name"])
            for job in self._paged(
                self.batch.list_namespaced_job,
                self.batch.list_job_for_all_namespaces,
                namespaces,
                FIRE_JOB_SELECTOR,
                page=page,
            )
            if _active(job)
        }

    def pending_launcher_pods(self, namespaces: list[str]) -> Iterator[dict]:
        """wfclock's launcher pods that have not started (as JSON), in `namespaces` (empty:
        all), a page at a time: a minute whose 2,000 pods wait for a node is 2,000 pending pods."""
        return self._paged(
            self.core.list_namespaced_pod,
            self.core.list_pod_for_all_namespaces,
            namespaces,
            f"{REGISTRATION_LABEL}=launcher-pod",
            field_selector="status.phase=Pending",
        )

    def stuck_cause(self, namespace: str, job_name: str) -> str:
        """Why a fire's Job has not delivered: what its pods wait for (image, Secret, node)."""
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
        ).items
        if not pods:
            return f"Job {job_name} has no pod (quota, admission or a missing node?)"
        causes = []
        for pod in pods:
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason:
                    causes.append(
                        f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''}"
                    )
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    causes.append(
                        f"pod {pod.metadata.name}: {condition.reason}: {condition.message}"
                    )
        if causes:
            return "; ".join(c.strip().rstrip(":") for c in causes)[:500]
        return f"Job {job_name}: pod {pods[0].metadata.name} is {pods[0].status.phase}"

    def delete_cronjob(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self._write,
            self.batch.delete_namespaced_cron_job,
            name,
            namespace,
            propagation_policy="Background",
        )

    def delete_job(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self._write,
            self.batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
        )

    @staticmethod
    def _write(fn, *args, **kwargs) -> None:
        """A write whose response the operator does not need: skipping the client's model
        deserialisation is most of a write's client-side cost. The body is read so the
        connection goes back to the pool."""
        response = fn(*args, _preload_content=False, **kwargs)
        response.read()
        response.release_conn()

    @staticmethod
    def _ignore_404(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    # --- namespace, secret ---

    def _one_at_a_time(self, *key: str) -> threading.Lock:
        with self._keyed_guard:
            return self._keyed[key]

    def namespace_tenant(self, namespace: str) -> str | None:
        """The namespace's wfclock.dev/tenant label (cached briefly; admission checks it too)."""
        cached = self._tenants.get(namespace)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        with self._one_at_a_time("namespace", namespace):
            cached = self._tenants.get(namespace)  # read by the thread before this one
            if cached and time.monotonic() - cached[0] < self._ttl:
                return cached[1]
            labels = self.core.read_namespace(namespace).metadata.labels or {}
            tenant = labels.get(TENANT_LABEL)
            self._tenants[namespace] = (time.monotonic(), tenant)
            return tenant

    def ensure_secret(
        self, namespace: str, name: str, data: dict[str, str], *, force=False
    ) -> bool:
        """Keeps a Secret of wfclock's with exactly `data` in `namespace`; True when written.
        What it saw is trusted for the cache's seconds, so the reconciles of a burst cost no call
        unless `force` (the resync, a launcher pod that cannot read it)."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self._ensure_encoded(namespace, name, encoded, force=force)

    def _ensure_encoded(self, namespace: str, name: str, encoded: dict, *, force: bool) -> bool:
        digest = hashlib.sha256(repr(sorted(encoded.items())).encode()).hexdigest()
        if not force and self._kept(namespace, name, digest):
            return False
        with self._one_at_a_time("secret", namespace, name):
            if not force and self._kept(namespace, name, digest):
                return False  # kept by the thread before this one
            return self._write_secret(namespace, name, encoded, digest)

    def _kept(self, namespace: str, name: str, digest: str) -> bool:
        seen = self._secrets.get((namespace, name))
        return seen is not None and seen[1] == digest and time.monotonic() - seen[0] < self._ttl

    def _write_secret(self, namespace: str, name: str, encoded: dict, digest: str) -> bool:
        current = self._ignore_404(self.core.read_namespaced_secret, name, namespace)
        if current is not None and (current.data or {}) == encoded:
            self._secrets[(namespace, name)] = (time.monotonic(), digest)
            return False
        body = {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "wfclock"}},
            "type": "Opaque",
            "data": encoded,
        }
        if current is None:
            try:
                self._write(self.core.create_namespaced_secret, namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self._write(self.core.patch_namespaced_secret, name, namespace, {"data": encoded})
        else:
            self._write(self.core.patch_namespaced_secret, name, namespace, {"data": encoded})
        self._secrets[(namespace, name)] = (time.monotonic(), digest)
        return True

    def copy_secret(self, source: str, namespace: str, name: str, *, force=False) -> bool:
        """Keeps a copy of the database Secret (`source` = "namespace/name") in `namespace`:
        the source is read every time (a rotation reaches the copies at the next reconcile),
        the copy written only when it differs from what was last kept."""
        source_ns, source_name = source.split("/", 1)
        if source_ns == namespace and source_name == name:
            return False
        data = self.core.read_namespaced_secret(source_name, source_ns).data or {}
        return self._ensure_encoded(namespace, name, data, force=force)

    # --- the WorkflowSchedule itself ---

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self._ignore_404(
            self._write,
            self.objects.patch_namespaced_custom_object_status,
            *(API_GROUP, API_VERSION, namespace, PLURAL, name),
            {"status": status},
        )

    def delete_schedule(self, namespace: str, name: str, uid: str, resource_version: str) -> bool:
        """Deletes this very WorkflowSchedule, as it was read (same uid, unchanged since): False
        when it is gone, was replaced by another of the same name, or changed meanwhile."""
        try:
            self._write(
                self.objects.delete_namespaced_custom_object,
                *(API_GROUP, API_VERSION, namespace, PLURAL, name),
                body={"preconditions": {"uid": uid, "resourceVersion": resource_version}},
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def get_schedule(self, namespace: str, name: str) -> dict | None:
        return self._ignore_404(
            self.objects.get_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
        )

    def event_later(self, ref: dict, type_: str, reason: str, message: str) -> None:
        """An Event posted in the background, off a time-critical path."""
        self._notices.submit(self.event, ref, type_, reason, message)

    def event(self, ref: dict, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the WorkflowSchedule (usable from any thread)."""
        now = datetime.now(UTC)
        stamp = utc_iso(now.replace(microsecond=0))
        body = {
            "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": ref["name"],
                "namespace": ref["namespace"],
                "uid": ref["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": "wfclock-operator"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "wfclock.dev/operator",
            "reportingInstance": f"wfclock-{uuid.getnode():x}",
        }
        try:
            self._write(self.core.create_namespaced_event, ref["namespace"], body)
        except ApiException as exc:
            log.warning("could not post event %s: %s", reason, exc.reason)


def _active(job: dict) -> bool:
    """`Kube.job_active` of a Job read as JSON."""
    if (job.get("spec") or {}).get("suspend"):
        return False
    conditions = (job.get("status") or {}).get("conditions") or []
    return not any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )
