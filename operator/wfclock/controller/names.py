"""Deterministic child names: the same schedule (and runAt) always gives the same name."""

from __future__ import annotations

import hashlib
from datetime import datetime

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
    minutes = str(int(run_at.timestamp()) // 60)
    suffix = _short_hash(uid, run_at.isoformat())
    budget = JOB_NAME_MAX - len(minutes) - len(suffix) - 2
    return f"{_trim(schedule_name, budget)}-{suffix}-{minutes}"
