"""Thin wrappers over the Kubernetes client: create-if-absent, patch, delete, events, status."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.rest import ApiException

from wfclock.controller.builders import SCHEDULE_UID_LABEL
from wfclock.firetime import utc_iso
from wfclock.model import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger("wfclock.operator")


class Kube:
    def __init__(self, api: client.ApiClient):
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.objects = client.CustomObjectsApi(api)

    # --- children ---

    def owned(self, namespace: str, uid: str) -> tuple[list, list]:
        selector = f"{SCHEDULE_UID_LABEL}={uid}"
        cronjobs = self.batch.list_namespaced_cron_job(namespace, label_selector=selector).items
        jobs = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return cronjobs, jobs

    def create_or_patch_cronjob(self, body: dict):
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self.batch.create_namespaced_cron_job(ns, body), "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        # In place: one write, same UID, so the controller keeps its fire history.
        return self.batch.patch_namespaced_cron_job(name, ns, body), "updated"

    def create_job_if_absent(self, body: dict):
        ns = body["metadata"]["namespace"]
        try:
            return self.batch.create_namespaced_job(ns, body), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self.batch.read_namespaced_job(body["metadata"]["name"], ns), False

    def suspend_cronjob(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self.batch.patch_namespaced_cron_job, name, namespace, {"spec": {"suspend": True}}
        )

    def release_job(self, namespace: str, name: str) -> bool:
        """Un-suspends a one-time Job; False when it no longer exists."""
        try:
            self.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def delete_cronjob(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self.batch.delete_namespaced_cron_job, name, namespace,
            propagation_policy="Background",
        )  # fmt: skip

    def delete_job(self, namespace: str, name: str) -> None:
        self._ignore_404(
            self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
        )

    @staticmethod
    def _ignore_404(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    # --- namespace, secret ---

    def namespace_tenant(self, namespace: str) -> str | None:
        labels = self.core.read_namespace(namespace).metadata.labels or {}
        return labels.get("wfclock.dev/tenant")

    def copy_secret(self, source: str, namespace: str, name: str) -> None:
        """Keeps a copy of the database Secret (`source` = "namespace/name") in `namespace`."""
        source_ns, source_name = source.split("/", 1)
        if source_ns == namespace and source_name == name:
            return
        data = self.core.read_namespaced_secret(source_name, source_ns).data
        body = {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "wfclock"}},
            "type": "Opaque",
            "data": data,
        }
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_secret(name, namespace, {"data": data})

    # --- the WorkflowSchedule itself ---

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self._ignore_404(
            self.objects.patch_namespaced_custom_object_status,
            API_GROUP, API_VERSION, namespace, PLURAL, name, {"status": status},
        )  # fmt: skip

    def get_schedule(self, namespace: str, name: str) -> dict | None:
        return self._ignore_404(
            self.objects.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL, name
        )

    def event(self, ref: dict, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the WorkflowSchedule (usable from any thread)."""
        now = datetime.now(UTC)
        body = {
            "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                "name": ref["name"], "namespace": ref["namespace"], "uid": ref["uid"],
            },
            "type": type_, "reason": reason, "message": message[:1000],
            "source": {"component": "wfclock-operator"},
            "firstTimestamp": utc_iso(now.replace(microsecond=0)),
            "lastTimestamp": utc_iso(now.replace(microsecond=0)),
            "count": 1,
            "reportingComponent": "wfclock.dev/operator",
            "reportingInstance": f"wfclock-{uuid.getnode():x}",
        }  # fmt: skip
        try:
            self.core.create_namespaced_event(ref["namespace"], body)
        except ApiException as exc:
            log.warning("could not post event %s: %s", reason, exc.reason)
