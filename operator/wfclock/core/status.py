"""A WorkflowSchedule's status, derived from its state row (the durable truth) at a given time.

The status is the most-read output of wfclock: `kubectl get wfs` columns, `status.nextFires`,
the Ready condition. Everything here is a pure function of the row, the parsed cron, the
generation, the previous conditions and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wfclock.core.calendars import DerivedCalendar, fire_refusal
from wfclock.core.fires import utc_iso
from wfclock.core.firetime import CronSpec
from wfclock.core.launcherpods import split_problem
from wfclock.core.nextfires import next_fires_under_policy, policy_next_fires_view
from wfclock.core.runcontrol import run_failed

NEXT_FIRES_SHOWN = 5
# This many clock fires in a row that failed (missed, or their run failed) make FiresHealthy
# False with reason FiresFailing.
FAILING_STREAK = 3

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
    "Ended": "Ended",
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
    if row["status"] == "completed" and row["trigger_type"] == "recurring":
        return "Ended"  # activeUntil passed or maxFires reached (row["end_reason"])
    if row["status"] == "failed":
        return "Missed" if row["last_run_status"] == "missed" else "Failed"
    return PHASES[row["status"]]


def _message(phase: str, row: dict) -> str:
    registered = f"{row['registered_kind']} {row['registered_name']}"
    reason = row.get("pause_reason")
    return {
        "Scheduled": f"{registered} is registered",
        "Paused": f"{registered} is suspended" + (f": {reason}" if reason else ""),
        "Completed": "the one-time schedule fired; it never fires again",
        "Missed": row["last_error"] or "runAt passed beyond the deadline",
        "Failed": row["last_error"] or "failed",
        "Invalid": row["last_error"] or "invalid",
        "Ended": f"the schedule ended: {row.get('end_reason') or 'its bounds are reached'}; "
        "its CronJob is removed",
    }[phase]


@dataclass(frozen=True)
class FireHistory:
    """What the ledger says of a schedule's fires: the latest ones (newest first, joined with
    their runs: `scheduled_for`, `first_delivered_at`, `outcome`, `reason`, `run_id`, `kind`,
    `run_status`, `run_created_at`), the latest clock fire whose run did not fail, and the
    latest clock fire that started no run."""

    recent: list[dict] = field(default_factory=list)
    last_success: datetime | None = None
    last_skipped: dict | None = None


@dataclass(frozen=True)
class FirePolicy:
    """What a recurring schedule's calendars and bounds need from outside its state row: the
    calendars of its namespace it references (as derived; absent: missing) and how many clock
    fires it launched so far (what maxFires counts)."""

    calendars: dict[str, DerivedCalendar] = field(default_factory=dict)
    launched: int = 0


def _has_policy(row: dict) -> bool:
    return (
        bool(row.get("calendars") or row.get("active_from") or row.get("active_until"))
        or row.get("max_fires") is not None
    )


def fire_outcome(fire: dict) -> str:
    """launched | buffered | skipped | missed (a skip the accounting recorded as missed)."""
    if fire["outcome"] == "skipped" and (fire.get("reason") or "").startswith("missed"):
        return "missed"
    return fire["outcome"]


def recent_fire_view(fire: dict) -> dict:
    """One fire as `status.recentFires` shows it: scheduled and actual side by side."""
    started = fire.get("run_created_at") or fire["first_delivered_at"]
    view = {
        "scheduledFor": utc_iso(fire["scheduled_for"]),
        "startedAt": utc_iso(started),
        "kind": fire.get("kind") or "clock",
        "outcome": fire_outcome(fire),
    }
    if fire.get("reason"):
        view["reason"] = fire["reason"]
    if fire.get("run_id"):
        view["runId"] = str(fire["run_id"])
        view["runStatus"] = fire.get("run_status") or "unknown"
    return view


def fire_failed(fire: dict) -> bool:
    """A clock fire that failed: missed, or its run ended in a failed status."""
    return fire_outcome(fire) == "missed" or (
        fire["outcome"] == "launched" and run_failed(fire.get("run_status"))
    )


def status_for(
    row: dict,
    cron: CronSpec | None,
    generation: int,
    previous: list[dict],
    now: datetime,
    history: FireHistory | None = None,
    recent_shown: int = NEXT_FIRES_SHOWN,
    policy: FirePolicy | None = None,
) -> dict:
    """The status that reflects the state row, the registration and the ledger's `history` at
    `now`; `cron` is the parsed expression of a recurring schedule (None for a one-time one)."""
    history = history or FireHistory()
    policy = policy or FirePolicy()
    phase = phase_for(row)
    next_fires: list[dict] = []
    excluded_fires: list[dict] = []
    missing = [n for n in row.get("calendars") or [] if n not in policy.calendars]
    remaining = (
        max(row["max_fires"] - policy.launched, 0) if row.get("max_fires") is not None else None
    )
    if missing:
        pass  # fail closed: no fire runs, the Ready condition says why
    elif phase == "Scheduled" and row["trigger_type"] == "recurring" and cron is not None:
        if _has_policy(row):
            names, timezone = list(row.get("calendars") or []), row["timezone"]
            next_fires, excluded_fires = next_fires_under_policy(
                cron,
                timezone,
                now,
                NEXT_FIRES_SHOWN,
                lambda fire: fire_refusal(names, policy.calendars, timezone, fire),
                active_from=row.get("active_from"),
                active_until=row.get("active_until"),
                remaining=remaining,
                dst_policy=row.get("dst_policy"),
            )
        else:
            next_fires = policy_next_fires_view(
                cron, row["timezone"], row.get("dst_policy"), now, NEXT_FIRES_SHOWN
            )
    elif phase == "Scheduled" and row["trigger_type"] == "schedule":
        next_fires = [{"at": utc_iso(row["run_at"]), "local": row["run_at"].isoformat()}]
    ready = phase in ("Scheduled", "Paused", "Completed", "Ended")
    ready_reason, ready_message = READY_REASONS[phase], _message(phase, row)
    if missing and phase in ("Scheduled", "Paused"):
        ready, ready_reason = False, "CalendarMissing"
        ready_message = (
            f"WorkflowCalendar {', '.join(missing)} not found (or invalid) in namespace "
            f"{row['namespace']}; every fire is refused until it exists (fail closed)"
        )
    policy_status = {}
    if row["trigger_type"] == "recurring" and _has_policy(row):
        policy_status = {"excludedFires": excluded_fires, "remainingFires": remaining}
        if row.get("calendars"):
            policy_status["calendars"] = list(row["calendars"])
    return {
        **policy_status,
        "phase": phase,
        "observedGeneration": generation,
        "registered": {"kind": row["registered_kind"], "name": row["registered_name"]},
        "nextFireAt": next_fires[0]["at"] if next_fires else None,
        "nextFires": next_fires,
        "lastFireAt": utc_iso(row["last_fire_at"]) if row["last_fire_at"] else None,
        "lastRunId": str(row["last_run_id"]) if row["last_run_id"] else None,
        "lastResult": row["last_run_status"],
        "lastError": row["last_error"],
        "pauseReason": row.get("pause_reason") if phase == "Paused" else None,
        "overlapPolicy": row.get("overlap_policy") or "Allow",
        "recentFires": [recent_fire_view(f) for f in history.recent[:recent_shown]],
        "lastSuccessfulFireAt": utc_iso(history.last_success) if history.last_success else None,
        "lastSkippedFire": _skipped_view(history.last_skipped),
        "conditions": [
            condition(
                "Ready",
                ready,
                ready_reason,
                ready_message,
                generation,
                previous,
                now,
            ),
            _fires_condition(row, history, generation, previous, now),
        ],
    }


def _skipped_view(fire: dict | None) -> dict | None:
    if fire is None:
        return None
    return {
        "scheduledFor": utc_iso(fire["scheduled_for"]),
        "outcome": fire_outcome(fire),
        "reason": fire.get("reason") or "",
    }


def failing_streak(history: FireHistory) -> list[dict]:
    """The latest FAILING_STREAK clock fires when every one of them failed, else []."""
    clock = [f for f in history.recent if (f.get("kind") or "clock") == "clock"]
    latest = clock[:FAILING_STREAK]
    if len(latest) == FAILING_STREAK and all(fire_failed(f) for f in latest):
        return latest
    return []


def _fires_condition(
    row: dict, history: FireHistory, generation: int, previous: list[dict], now: datetime
) -> dict:
    """FiresHealthy: whether fires are delivered by their Jobs, do not keep failing, and none
    was missed lately."""
    if row.get("fire_problem"):
        reason, message = split_problem(row["fire_problem"])
        return condition("FiresHealthy", False, reason, message, generation, previous, now)
    streak = failing_streak(history)
    if streak:
        what = "; ".join(
            f"{utc_iso(f['scheduled_for'])} "
            + (f"run {f['run_id']} {f['run_status']}" if fire_outcome(f) != "missed" else "missed")
            for f in streak
        )
        message = f"the last {len(streak)} fires all failed: {what}"
        return condition("FiresHealthy", False, "FiresFailing", message, generation, previous, now)
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


def end_reason(
    max_fires: int | None,
    active_until: datetime | None,
    launched: int,
    now: datetime,
    grace: timedelta,
) -> str | None:
    """Why a recurring schedule has ended (None: it has not): its maxFires launched, or
    activeUntil passed by more than `grace` (the last fire's deadline and jitter, so a fire in
    its window is never cut off by the removal of its CronJob)."""
    if max_fires is not None and launched >= max_fires:
        return f"maxFires {max_fires} reached ({launched} fires launched)"
    if active_until is not None and now > active_until + grace:
        return f"activeUntil {utc_iso(active_until)} passed"
    return None
