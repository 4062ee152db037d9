"""When a completed one-time schedule that opted in (`spec.deleteAfterCompletionSeconds`) is
deleted. Pure: the spec and status as Kubernetes holds them in, an instant out."""

from __future__ import annotations

from datetime import datetime, timedelta

from wfclock.core.fires import parse_instant


def deletion_due(spec: dict, status: dict) -> datetime | None:
    """The instant the schedule is to be deleted: its fire's launch (`status.lastFireAt`) plus
    `spec.deleteAfterCompletionSeconds`. None while it is not Completed, or when it did not opt
    in (a recurring schedule never completes)."""
    seconds = spec.get("deleteAfterCompletionSeconds")
    trigger = spec.get("trigger") or {}
    if seconds is None or trigger.get("type") != "schedule":
        return None
    if status.get("phase") != "Completed" or not status.get("lastFireAt"):
        return None
    return parse_instant(status["lastFireAt"]) + timedelta(seconds=seconds)
