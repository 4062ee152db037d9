"""Deterministic names and labels of what the operator creates: the same schedule (and instant)
always gives the same name, so a retried create finds its own object (409) instead of a twin."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

TENANT_LABEL = "wfclock.dev/tenant"  # on namespaces: the tenant whose schedules may live there
# The schedule's name as a label value (itself when it fits, see schedule_label_value); the full
# name is always in the SCHEDULE_NAME_ANNOTATION, which is what the operator reads back.
SCHEDULE_LABEL = "wfclock.dev/schedule"
SCHEDULE_NAME_ANNOTATION = "wfclock.dev/schedule-name"
SCHEDULE_UID_LABEL = "wfclock.dev/schedule-uid"
# What a child is: "recurring" (CronJob), "recurring-fire" (its Jobs), "one-time" (Job), or
# "launcher-pod".
REGISTRATION_LABEL = "wfclock.dev/registration"

CRONJOB_NAME_MAX = 52  # the CronJob controller appends "-<unix minutes>" (up to 11 chars)
JOB_NAME_MAX = 63
LABEL_VALUE_MAX = 63  # a resource name may have 253 characters, a label value 63


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:5]


def _trim(name: str, budget: int) -> str:
    return name[:budget].rstrip("-.")


def cronjob_name(schedule_name: str, uid: str) -> str:
    suffix = _short_hash(uid)
    return f"{_trim(schedule_name, CRONJOB_NAME_MAX - len(suffix) - 1)}-{suffix}"


def one_time_job_name(schedule_name: str, uid: str, run_at: datetime) -> str:
    """Derived from the UTC instant, so `+01:00` and `Z` spellings of one instant name one Job."""
    instant = run_at.astimezone(UTC)
    minutes = str(int(instant.timestamp()) // 60)
    suffix = _short_hash(uid, instant.isoformat())
    budget = JOB_NAME_MAX - len(minutes) - len(suffix) - 2
    return f"{_trim(schedule_name, budget)}-{suffix}-{minutes}"


def schedule_label_value(schedule_name: str) -> str:
    """A schedule name as a label value: the name itself up to 63 characters, else its start and
    a hash of the whole name (distinct for names that share a long prefix)."""
    if len(schedule_name) <= LABEL_VALUE_MAX:
        return schedule_name
    suffix = hashlib.sha256(schedule_name.encode()).hexdigest()[:10]
    return f"{_trim(schedule_name, LABEL_VALUE_MAX - len(suffix) - 1)}-{suffix}"


def schedule_name_of(metadata: dict) -> str:
    """The schedule a child belongs to, from its metadata: the annotation (the full name), or
    the label on children made before the annotation existed (names of 63 characters at most)."""
    annotations = metadata.get("annotations") or {}
    return annotations.get(SCHEDULE_NAME_ANNOTATION) or metadata["labels"][SCHEDULE_LABEL]
