"""Parsed schedules for unit tests of the core."""

import uuid

from wfclock.core.builders import Schedule
from wfclock.core.model import Rules, validate_spec
from wfclock.settings import Settings

SETTINGS = Settings(database_url="postgresql://x/y")


def schedule(trigger: dict, now, name: str = "daily", **spec) -> Schedule:
    fields = {"tenant": "acme", "workflowId": str(uuid.uuid4()), "workflowVersion": 2}
    parsed = validate_spec({**fields, "trigger": trigger, **spec}, Rules(now=now))
    return Schedule(name, "acme", str(uuid.uuid4()), parsed)


def state_row(s: Schedule, **overrides) -> dict:
    """A state row as the operator writes it for `s`, before any fire."""
    trigger = s.spec.trigger
    return {
        "status": "scheduled",
        "trigger_type": trigger.type,
        "timezone": trigger.timezone,
        "run_at": getattr(trigger, "runAt", None),
        "dst_policy": getattr(trigger, "dstPolicy", None),
        "registered_kind": "CronJob" if s.recurring else "Job",
        "registered_name": "daily-x",
        "last_fire_at": None,
        "last_run_id": None,
        "last_run_status": None,
        "last_error": None,
        **overrides,
    }
