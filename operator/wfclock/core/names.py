"""Deterministic names and labels of what the operator creates: the same schedule (and instant)
always gives the same name, so a retried create finds its own object (409) instead of a twin."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

TENANT_LABEL = "wfclock.dev/tenant"  # on namespaces: the tenant whose schedules may live there
SCHEDULE_LABEL = "wfclock.dev/schedule"
SCHEDULE_UID_LABEL = "wfclock.dev/schedule-uid"
# What a child is: "recurring" (CronJob), "recurring-fire" (its Jobs), "one-time" (Job), or
# "launcher-pod".
REGISTRATION_LABEL = "wfclock.dev/registration"

CRONJOB_NAME_MAX = 52  # the CronJob controller appends "-<unix minutes>" (up to 11 chars)
JOB_NAME_MAX = 63


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
