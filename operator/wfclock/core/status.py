"""A WorkflowSchedule's status, derived from its state row (the durable truth) at a given time.

The status is the most-read output of wfclock: `kubectl get wfs` columns, `status.nextFires`,
the Ready condition. Everything here is a pure function of the row, the parsed cron, the
generation, the previous conditions and `now`.
"""

from __future__ import annotations

from datetime import datetime

from wfclock.core.fires import utc_iso
from wfclock.core.firetime import CronSpec
from wfclock.core.launcherpods import split_problem
from wfclock.core.nextfires import next_fires_view

NEXT_FIRES_SHOWN = 5

# The state row's status, as people read it. A failed one-time schedule is Missed when its
# runAt passed beyond the deadline, Failed otherwise.
PHASES = {
    "scheduled": "Scheduled",
    "paused": "Paused",
    "completed": "Completed",
    "disabled": "Invalid",
}
READY_REASONS = {
    "Scheduled": "Registered",
    "Paused": "Paused",
    "Completed": "Fired",
    "Missed": "Missed",
    "Failed": "Failed",
    "Invalid": "InvalidSpec",
}


def condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    previous: list[dict],
    now: datetime,
) -> dict:
    """A standard condition; lastTransitionTime moves only when the status changes."""
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": utc_iso(now) if changed else old.get("lastTransitionTime"),
    }


def phase_for(row: dict) -> str:
    if row["status"] == "failed":
        return "Missed" if row["last_run_status"] == "missed" else "Failed"
    return PHASES[row["status"]]


def _message(phase: str, row: dict) -> str:
    registered = f"{row['registered_kind']} {row['registered_name']}"
    return {
        "Scheduled": f"{registered} is registered",
        "Paused": f"{registered} is suspended",
        "Completed": "the one-time schedule fired; it never fires again",
        "Missed": row["last_error"] or "runAt passed beyond the deadline",
        "Failed": row["last_error"] or "failed",
        "Invalid": row["last_error"] or "invalid",
    }[phase]


def status_for(
    row: dict, cron: CronSpec | None, generation: int, previous: list[dict], now: datetime
) -> dict:
    """The status that reflects the state row and the registration at `now`; `cron` is the parsed
    expression of a recurring schedule (None for a one-time one)."""
    phase = phase_for(row)
    next_fires: list[dict] = []
    if phase == "Scheduled" and row["trigger_type"] == "recurring" and cron is not None:
        next_fires = next_fires_view(cron, row["timezone"], now, NEXT_FIRES_SHOWN)
    elif phase == "Scheduled" and row["trigger_type"] == "schedule":
        next_fires = [{"at": utc_iso(row["run_at"]), "local": row["run_at"].isoformat()}]
    ready = phase in ("Scheduled", "Paused", "Completed")
    return {
        "phase": phase,
        "observedGeneration": generation,
        "registered": {"kind": row["registered_kind"], "name": row["registered_name"]},
        "nextFireAt": next_fires[0]["at"] if next_fires else None,
        "nextFires": next_fires,
        "lastFireAt": utc_iso(row["last_fire_at"]) if row["last_fire_at"] else None,
        "lastRunId": str(row["last_run_id"]) if row["last_run_id"] else None,
        "lastResult": row["last_run_status"],
        "lastError": row["last_error"],
        "conditions": [
            condition(
                "Ready",
                ready,
                READY_REASONS[phase],
                _message(phase, row),
                generation,
                previous,
                now,
            ),
            _fires_condition(row, generation, previous, now),
        ],
    }


def _fires_condition(row: dict, generation: int, previous: list[dict], now: datetime) -> dict:
    """FiresHealthy: whether fires are delivered by their Jobs and none was missed lately."""
    if row.get("fire_problem"):
        reason, message = split_problem(row["fire_problem"])
        return condition("FiresHealthy", False, reason, message, generation, previous, now)
    if row["last_run_status"] == "missed":
        message = row["last_error"] or "a fire was missed"
        return condition("FiresHealthy", False, "FireMissed", message, generation, previous, now)
    return condition(
        "FiresHealthy", True, "Delivered", "fires are delivered", generation, previous, now
    )


def invalid_status(
    reason: str, message: str, generation: int, previous: list[dict], now: datetime
) -> dict:
    """The status of a spec wfclock refuses: nothing registered, the reason in the condition."""
    return {
        "phase": "Invalid",
        "observedGeneration": generation,
        "nextFireAt": None,
        "nextFires": [],
        "lastError": message,
        "conditions": [condition("Ready", False, reason, message, generation, previous, now)],
    }


def error_condition(error: Exception, generation: int, previous: list[dict], now: datetime) -> dict:
    """The Ready condition while a reconcile fails for a reason worth a retry."""
    message = f"{type(error).__name__}: {str(error)[:300]} (retrying)"
    return condition("Ready", False, "ReconcileError", message, generation, previous, now)
