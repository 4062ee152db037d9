"""A fake of the operator's small `Kube` surface, for ordering tests of the reconciler that run in
milliseconds. It keeps the children it was asked to create and records every call, together
with the state row as it stood at that moment, so a test can say "the CronJob was patched before
the state row changed". Behaviour against a real API server is what the cluster tests check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

from wfclock.controller.kube import slim_child
from wfclock.core.builders import DIGEST_ANNOTATION
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.db import store


def _object(body: dict) -> SimpleNamespace:
    metadata = SimpleNamespace(name=body["metadata"]["name"], labels=body["metadata"]["labels"])
    return SimpleNamespace(metadata=metadata, body=body)


@dataclass
class Call:
    name: str
    args: tuple
    row: dict | None  # the schedule's state row when the call was made


@dataclass
class FakeKube:
    engine: object
    tenants: dict[str, str] = field(default_factory=lambda: {"acme": "acme"})
    cronjobs: dict[tuple[str, str], dict] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    active_jobs: set[tuple[str, str]] = field(default_factory=set)  # released, not finished
    schedules: dict[tuple[str, str], dict] = field(default_factory=dict)  # for get_schedule
    secrets: dict[tuple[str, str], dict] = field(default_factory=dict)
    pending_pods: list[dict] = field(default_factory=list)  # launcher pods not started, as JSON

    def _record(self, name: str, *args, uid: str | None = None) -> None:
        row = store.get_schedule(self.engine, uuid.UUID(uid)) if uid else None
        self.calls.append(Call(name, args, row))

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def call(self, name: str) -> Call:
        return next(c for c in self.calls if c.name == name)

    def _uid_of(self, store_: dict, namespace: str, name: str) -> str | None:
        body = store_.get((namespace, name))
        return body["metadata"]["labels"][SCHEDULE_UID_LABEL] if body else None

    # --- the Kube surface ---

    def owned(self, namespace: str, uid: str):
        def mine(objects):
            return [
                _object(b)
                for (ns, _), b in objects.items()
                if ns == namespace and b["metadata"]["labels"][SCHEDULE_UID_LABEL] == uid
            ]

        self._record("owned", namespace, uid=uid)
        return mine(self.cronjobs), mine(self.jobs)

    def create_or_patch_cronjob(self, body: dict) -> str:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        action = "updated" if key in self.cronjobs else "created"
        self._record(
            "create_or_patch_cronjob", *key, uid=body["metadata"]["labels"][SCHEDULE_UID_LABEL]
        )
        self.cronjobs[key] = body
        return action

    def create_job_if_absent(self, body: dict) -> bool:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self._record(
            "create_job_if_absent", *key, uid=body["metadata"]["labels"][SCHEDULE_UID_LABEL]
        )
        if key in self.jobs:
            return False
        self.jobs[key] = body
        return True

    def suspend_cronjob(self, namespace: str, name: str) -> None:
        self._record(
            "suspend_cronjob", namespace, name, uid=self._uid_of(self.cronjobs, namespace, name)
        )
        if (namespace, name) in self.cronjobs:
            self.cronjobs[(namespace, name)]["spec"]["suspend"] = True

    def release_job(self, namespace: str, name: str) -> bool:
        self._record("release_job", namespace, name, uid=self._uid_of(self.jobs, namespace, name))
        if (namespace, name) not in self.jobs:
            return False
        self.jobs[(namespace, name)]["spec"]["suspend"] = False
        return True

    def delete_cronjob(self, namespace: str, name: str) -> None:
        self._record(
            "delete_cronjob", namespace, name, uid=self._uid_of(self.cronjobs, namespace, name)
        )
        self.cronjobs.pop((namespace, name), None)

    def delete_job(self, namespace: str, name: str) -> None:
        self._record("delete_job", namespace, name, uid=self._uid_of(self.jobs, namespace, name))
        self.jobs.pop((namespace, name), None)

    def namespace_tenant(self, namespace: str) -> str | None:
        return self.tenants.get(namespace)

    def ensure_secret(self, namespace: str, name: str, data: dict, *, force=False) -> bool:
        self._record("ensure_secret", namespace, name)
        self.secrets[(namespace, name)] = dict(data)
        return True

    def copy_secret(self, source: str, namespace: str, name: str, *, force=False) -> bool:
        self._record("copy_secret", source, namespace, name)
        return True

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self._record("patch_status", namespace, name)

    def get_schedule(self, namespace: str, name: str) -> dict | None:
        return self.schedules.get((namespace, name))

    def job_active(self, namespace: str, name: str) -> bool:
        self._record("job_active", namespace, name)
        return (namespace, name) in self.active_jobs

    def active_fire_jobs(self, namespaces: list[str]) -> set[tuple[str, str]]:
        self._record("active_fire_jobs", tuple(namespaces))
        return {job for job in self.active_jobs if not namespaces or job[0] in namespaces}

    def pending_launcher_pods(self, namespaces: list[str]) -> list[dict]:
        return [
            p
            for p in self.pending_pods
            if not namespaces or p["metadata"]["namespace"] in namespaces
        ]

    def stuck_cause(self, namespace: str, job_name: str) -> str:
        return f"pod {job_name}-p: ErrImageNeverPull: image is not present"

    def child_digests(self, namespaces: list[str]) -> dict:
        self._record("child_digests", tuple(namespaces))
        return {
            (kind, ns, name): (body["metadata"].get("annotations") or {}).get(DIGEST_ANNOTATION, "")
            for kind, registration, objects in (
                ("CronJob", "recurring", self.cronjobs),
                ("Job", "one-time", self.jobs),
            )
            for (ns, name), body in objects.items()
            if (not namespaces or ns in namespaces)
            and (body["metadata"].get("labels") or {}).get(REGISTRATION_LABEL) == registration
        }

    def list_children(self, namespaces: list[str]) -> tuple[dict, dict]:
        self._record("list_children")
        # As slim as the real one's: a consumer of a dropped field fails here too.
        return (
            {key: slim_child(body) for key, body in self.cronjobs.items()},
            {key: slim_child(body) for key, body in self.jobs.items()},
        )

    def event(self, ref: dict, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    event_later = event
