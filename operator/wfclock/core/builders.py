"""Pure builders: a WorkflowSchedule (parsed spec + metadata) in, Kubernetes objects out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from wfclock.core.fires import utc_iso
from wfclock.core.model import (
    API_GROUP,
    API_VERSION,
    KIND,
    OneTimeTrigger,
    RecurringTrigger,
    WorkflowScheduleSpec,
)
from wfclock.core.names import (
    REGISTRATION_LABEL,
    SCHEDULE_LABEL,
    SCHEDULE_NAME_ANNOTATION,
    SCHEDULE_UID_LABEL,
    cronjob_name,
    one_time_job_name,
    schedule_label_value,
)
from wfclock.settings import Settings

# The CronJob controller's deadline for the 'skip' policy: a fire later than this is dropped.
SKIP_DEADLINE_SECONDS = 30


@dataclass(frozen=True)
class Schedule:
    """What the builders need to know about one WorkflowSchedule."""

    name: str
    namespace: str
    uid: str
    spec: WorkflowScheduleSpec
    # When this spec was published (applied); fires before it belong to an earlier spec.
    published_at: datetime | None = None
    # The schedule's wfclock.dev/traceparent annotation: its fires' runs join that trace.
    trace_parent: str | None = None

    @property
    def recurring(self) -> bool:
        return isinstance(self.spec.trigger, RecurringTrigger)


def owner_reference(schedule: Schedule) -> dict:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": schedule.name,
        "uid": schedule.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(schedule: Schedule, registration: str) -> dict:
    return {
        "app.kubernetes.io/managed-by": "wfclock",
        "app.kubernetes.io/component": "launcher",
        SCHEDULE_LABEL: schedule_label_value(schedule.name),
        SCHEDULE_UID_LABEL: schedule.uid,
        REGISTRATION_LABEL: registration,
    }


# Findings of the policy scan (checkov, `make lint`) that are wrong for a fire's Job, each
# suppressed where a scanner of the cluster sees it too, with its reason (docs/day-two.md).
SCAN_EXCEPTIONS = {
    "checkov.io/skip1": "CKV_K8S_43=the launcher image is the operator's setting; a digest "
    "there is used as given",
    "checkov.io/skip2": "CKV_K8S_15=IfNotPresent on purpose: a fire must not wait on the "
    "registry at its minute",
    "checkov.io/skip3": "CKV_K8S_35=the database URL comes by secretKeyRef (never in the "
    "manifest); the launcher contract reads it from the environment",
}


def _annotations(schedule: Schedule) -> dict:
    # The schedule's full name: any length, unlike a label value.
    return {SCHEDULE_NAME_ANNOTATION: schedule.name, **SCAN_EXCEPTIONS}


def child_name(schedule: Schedule) -> str:
    trigger = schedule.spec.trigger
    if isinstance(trigger, RecurringTrigger):
        return cronjob_name(schedule.name, schedule.uid)
    return one_time_job_name(schedule.name, schedule.uid, trigger.instant)


def _pod_template(schedule: Schedule, settings: Settings, fire_env: list[dict]) -> dict:
    env = [
        {
            "name": "WFCLOCK_DATABASE_URL",
            "valueFrom": {
                "secretKeyRef": {
                    "name": settings.database_credentials_name,
                    "key": settings.database_credentials_key,
                }
            },
        },
        {"name": "WFCLOCK_SCHEDULE_ID", "value": schedule.uid},
        *fire_env,
    ]
    if schedule.trace_parent:
        env.append({"name": "TRACEPARENT", "value": schedule.trace_parent})
    if settings.launcher_otlp_endpoint:
        env += [
            {"name": "OTEL_TRACES_EXPORTER", "value": "otlp"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": settings.launcher_otlp_endpoint},
            {"name": "OTEL_SERVICE_NAME", "value": "wfclock-launcher"},
        ]
    return {
        "metadata": {"labels": _labels(schedule, "launcher-pod")},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "launcher",
                    "image": settings.launcher_image,
                    "imagePullPolicy": settings.launcher_image_pull_policy,
                    "command": list(settings.launcher_command),
                    # The launcher's JSON line becomes the container's termination message.
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "env": env,
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        # The launcher is one Python thread: a limit of one core costs it
                        # nothing and bounds a runaway pod.
                        "limits": {"cpu": "1", "memory": "128Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


# A fire's Job may stay active this long at least, whatever its deadline: a pod needs time to
# be scheduled and started, and a launcher's retries to reach the database.
MIN_ACTIVE_SECONDS = 120


def active_deadline_seconds(schedule: Schedule) -> int:
    """How long a fire's Job may stay active: a pod that cannot start (image, Secret, quota) or
    a launcher that hangs must not keep the Job active forever, or `concurrencyPolicy: Forbid`
    would skip every later fire. The operator's accounting launches or records the fire."""
    trigger = schedule.spec.trigger
    # A jittered fire waits its offset (up to the jitter) in its pod before it claims.
    jitter = trigger.jitter_seconds if isinstance(trigger, RecurringTrigger) else 0
    return max(schedule.spec.startingDeadlineSeconds, MIN_ACTIVE_SECONDS) + jitter


# Exit 2 is unusable input: retrying cannot help, so the Job fails at once. Exit 75 (the
# database unreachable) counts against backoffLimit and is retried. A pod evicted or preempted
# (DisruptionTarget) is retried without counting.
POD_FAILURE_POLICY = {
    "rules": [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "launcher", "operator": "In", "values": [2]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}


def _job_spec(schedule: Schedule, settings: Settings, fire_env: list[dict]) -> dict:
    return {
        "backoffLimit": schedule.spec.backoffLimit,
        "activeDeadlineSeconds": active_deadline_seconds(schedule),
        "podFailurePolicy": POD_FAILURE_POLICY,
        # Finished Jobs and their pods go after this; the ledger keeps what each fire did.
        "ttlSecondsAfterFinished": settings.launcher_ttl_seconds_after_finished,
        "template": _pod_template(schedule, settings, fire_env),
    }


def build_cronjob(schedule: Schedule, settings: Settings) -> dict:
    trigger = schedule.spec.trigger
    assert isinstance(trigger, RecurringTrigger)
    name = cronjob_name(schedule.name, schedule.uid)
    fire_env = [
        {
            "name": "WFCLOCK_JOB_NAME",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}
            },
        },
        {"name": "WFCLOCK_CRONJOB_NAME", "value": name},
        # What this CronJob was registered for: a fire of an older cron or zone is refused.
        {"name": "WFCLOCK_CRON", "value": trigger.cron},
        {"name": "WFCLOCK_TIMEZONE", "value": trigger.timezone},
        # Which fires run around a daylight-saving change: the launcher refuses the rest.
        {"name": "WFCLOCK_DST_POLICY", "value": trigger.dstPolicy},
    ]
    if trigger.jitter_seconds:
        fire_env.append({"name": "WFCLOCK_JITTER_SECONDS", "value": str(trigger.jitter_seconds)})
    deadline = (
        SKIP_DEADLINE_SECONDS
        if schedule.spec.missedFires == "skip"
        else schedule.spec.startingDeadlineSeconds
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": schedule.namespace,
            "labels": _labels(schedule, "recurring"),
            "annotations": _annotations(schedule),
            "ownerReferences": [owner_reference(schedule)],
        },
        "spec": {
            # `L` is registered as 28-31; the launcher refuses the days that are not the last.
            "schedule": trigger.spec.registered,
            "timeZone": trigger.timezone,
            "suspend": schedule.spec.paused,
            # The launcher's fire key makes a second Job for the same fire harmless; Forbid keeps
            # a slow fire from piling up pods.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": deadline,
            "successfulJobsHistoryLimit": schedule.spec.successfulJobsHistoryLimit,
            "failedJobsHistoryLimit": schedule.spec.failedJobsHistoryLimit,
            "jobTemplate": {
                "metadata": {
                    "labels": _labels(schedule, "recurring-fire"),
                    "annotations": _annotations(schedule),
                },
                "spec": _job_spec(schedule, settings, fire_env),
            },
        },
    }


def build_one_time_job(schedule: Schedule, settings: Settings) -> dict:
    trigger = schedule.spec.trigger
    assert isinstance(trigger, OneTimeTrigger)
    run_at = trigger.instant
    fire_env = [
        {"name": "WFCLOCK_SCHEDULED_FOR", "value": utc_iso(run_at)},
        # The ledger records the fire under the Job's name, where the operator looks for it.
        {
            "name": "WFCLOCK_JOB_NAME",
            "value": one_time_job_name(schedule.name, schedule.uid, run_at),
        },
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": one_time_job_name(schedule.name, schedule.uid, run_at),
            "namespace": schedule.namespace,
            "labels": _labels(schedule, "one-time"),
            "annotations": {"wfclock.dev/run-at": utc_iso(run_at), **_annotations(schedule)},
            "ownerReferences": [owner_reference(schedule)],
        },
        # Created suspended at publish time; the operator releases it at runAt.
        "spec": {"suspend": True, **_job_spec(schedule, settings, fire_env)},
    }


# The digest of what a registration asked for, on the child: after a restart, a child that still
# carries the digest of what would be written now needs no write.
DIGEST_ANNOTATION = "wfclock.dev/registration-digest"


def registration_digest(body: dict) -> str:
    """A digest of a child's body as built (the digest annotation itself left out)."""
    metadata = dict(body["metadata"])
    metadata["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != DIGEST_ANNOTATION
    }
    canonical = json.dumps({**body, "metadata": metadata}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def with_digest(body: dict) -> dict:
    """The body with its registration digest in an annotation."""
    metadata = body["metadata"]
    annotations = {
        **(metadata.get("annotations") or {}),
        DIGEST_ANNOTATION: registration_digest(body),
    }
    return {**body, "metadata": {**metadata, "annotations": annotations}}
