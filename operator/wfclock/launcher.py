"""The one launcher service: every workflow run, whatever started it, is created here.

Clock fires, event-triggered starts and manual starts share the same rules: a claim on a unique
key (the fire key, the event id, or a request id), provenance on the run, a payload of a known
shape, and a notification to workers, all in one transaction. A clock fire additionally re-reads
the schedule's state under a row lock, so a Job created before a pause, delete or edit cannot
start a run it should not, and records every delivery in the fire ledger.

This module sits on every fire's path: it imports psycopg and the pure fire-time maths only
(no SQLAlchemy, pydantic, kopf or Kubernetes client), to keep the launcher's cold start short.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg.rows import dict_row

from wfclock.firetime import CronError, is_fire_instant, parse_cron, utc_iso

PAYLOAD_SCHEMA_REF = "payload.WorkflowClockTrigger.v1"
NOTIFY_CHANNEL = "wfclock_runs"


def fire_key_for(schedule_id: uuid.UUID | str, scheduled_for: datetime) -> str:
    """`workflow-schedule-fire:{scheduleId}:{scheduledFor as UTC ISO-8601}`."""
    return f"workflow-schedule-fire:{schedule_id}:{utc_iso(scheduled_for)}"


class UnknownSchedule(LookupError):
    """No state row for the schedule id: unusable input, nothing is written."""


class FireNotDue(ValueError):
    """A fire for an instant still in the future: unusable input, nothing is written (the real
    fire must still be able to claim its key when its time comes)."""


# Clock skew tolerated between the CronJob controller's node and the launcher's.
EARLY_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class ClockFire:
    schedule_id: uuid.UUID
    scheduled_for: datetime
    source: str  # the Job name, "backfill", "catch-up" ...


@dataclass(frozen=True)
class EventStart:
    tenant: str
    workflow_id: uuid.UUID
    workflow_version: int
    event_name: str
    event_id: str
    payload: dict
    payload_schema_ref: str | None = None


@dataclass(frozen=True)
class ManualStart:
    tenant: str
    workflow_id: uuid.UUID
    workflow_version: int
    payload: dict = field(default_factory=dict)
    requested_by: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class LaunchResult:
    outcome: str  # launched | duplicate | skipped
    key: str
    run_id: uuid.UUID | None = None
    reason: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "outcome": self.outcome,
                "fireKey": self.key,
                "runId": str(self.run_id) if self.run_id else None,
                "reason": self.reason,
            }
        )


def launch(conn, request: ClockFire | EventStart | ManualStart, *, now: datetime) -> LaunchResult:
    """Starts at most one run for `request`, in one transaction on `conn` (psycopg, not autocommit)."""
    with conn.transaction():
        if isinstance(request, ClockFire):
            return _launch_clock_fire(conn, request, now)
        return _launch_start(conn, request)


_SCHEDULE_FOR_FIRE = """
SELECT tenant, workflow_id, workflow_version, trigger_type, run_at, cron, timezone, enabled,
       status, deleted_at, trigger_effective_from
FROM workflow_schedules WHERE schedule_id = %s FOR UPDATE
"""

_DUPLICATE = """
UPDATE workflow_schedule_fires
SET attempts = attempts + 1, last_delivered_at = now()
WHERE fire_key = %s RETURNING outcome, run_id, reason
"""

# Claim, run and state in one statement: the run and the schedule update happen only when this
# delivery claimed the key, so a concurrent duplicate can never add a second run.
_CLAIM_AND_LAUNCH = """
WITH claim AS (
    INSERT INTO workflow_schedule_fires
        (fire_key, schedule_id, scheduled_for, outcome, reason, run_id, source)
    VALUES (%(key)s, %(schedule_id)s, %(scheduled_for)s, %(outcome)s, %(reason)s, %(run_id)s,
            %(source)s)
    ON CONFLICT (fire_key) DO NOTHING
    RETURNING fire_key, run_id
), run AS (
    INSERT INTO workflow_runs
        (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
         trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
    SELECT claim.run_id, %(tenant)s, %(workflow_id)s, %(workflow_version)s, 'queued',
           %(payload)s, %(schema_ref)s, %(trigger_type)s, %(metadata)s, claim.fire_key,
           %(schedule_id)s
    FROM claim WHERE claim.run_id IS NOT NULL
    RETURNING run_id
), state AS (
    UPDATE workflow_schedules SET
        last_fire_at = CASE WHEN %(launched)s THEN %(scheduled_for)s ELSE last_fire_at END,
        last_fire_key = CASE WHEN %(launched)s THEN %(key)s ELSE last_fire_key END,
        last_run_id = CASE WHEN %(launched)s THEN %(run_id)s ELSE last_run_id END,
        last_run_status = CASE WHEN %(launched)s THEN 'queued' ELSE 'skipped' END,
        last_error = CASE WHEN %(launched)s THEN NULL ELSE last_error END,
        status = CASE WHEN %(launched)s AND trigger_type = 'schedule' THEN 'completed'
                      ELSE status END,
        next_fire_at = CASE WHEN %(launched)s AND trigger_type = 'schedule' THEN NULL
                            ELSE next_fire_at END,
        updated_at = now()
    WHERE schedule_id = %(schedule_id)s AND EXISTS (SELECT 1 FROM claim)
    RETURNING 1
), notify AS (
    SELECT pg_notify(%(channel)s, %(notice)s) FROM run
)
SELECT (SELECT count(*) FROM claim) AS claimed, (SELECT count(*) FROM notify) AS notified
"""


def _launch_clock_fire(conn, fire: ClockFire, now: datetime) -> LaunchResult:
    key = fire_key_for(fire.schedule_id, fire.scheduled_for)
    if fire.scheduled_for > now + EARLY_TOLERANCE:
        raise FireNotDue(
            f"fire for {utc_iso(fire.scheduled_for)} is not due yet (now {utc_iso(now)})"
        )
    schedule = conn.cursor(row_factory=dict_row).execute(_SCHEDULE_FOR_FIRE, (fire.schedule_id,)).fetchone()
    if schedule is None:
        raise UnknownSchedule(f"no schedule with id {fire.schedule_id} in workflow_schedules")
    reason = skip_reason(schedule, fire.scheduled_for)
    run_id = None if reason else uuid.uuid4()
    payload = clock_payload(fire, schedule, fired_at=now)
    params = {
        "key": key,
        "schedule_id": fire.schedule_id,
        "scheduled_for": fire.scheduled_for,
        "outcome": "skipped" if reason else "launched",
        "reason": reason,
        "run_id": run_id,
        "source": fire.source,
        "launched": run_id is not None,
        "tenant": schedule["tenant"],
        "workflow_id": schedule["workflow_id"],
        "workflow_version": schedule["workflow_version"],
        "payload": json.dumps(payload),
        "schema_ref": PAYLOAD_SCHEMA_REF,
        "trigger_type": schedule["trigger_type"],
        "metadata": json.dumps({"fireKey": key, "source": fire.source}),
        "channel": NOTIFY_CHANNEL,
        "notice": json.dumps({"runId": str(run_id), "tenant": schedule["tenant"]}),
    }
    claimed = conn.execute(_CLAIM_AND_LAUNCH, params).fetchone()[0]
    if not claimed:
        outcome, first_run_id, first_reason = conn.execute(_DUPLICATE, (key,)).fetchone()
        return LaunchResult("duplicate", key, first_run_id, first_reason or f"first {outcome}")
    if reason:
        return LaunchResult("skipped", key, None, reason)
    return LaunchResult("launched", key, run_id)


def skip_reason(schedule: dict, scheduled_for: datetime) -> str | None:
    """Why a fire of this schedule must not start a run, or None when it may."""
    if schedule["deleted_at"] is not None:
        return "deleted"
    if schedule["status"] == "paused":
        return "paused"
    if schedule["status"] == "completed":
        return "completed"
    if not schedule["enabled"] or schedule["status"] in ("disabled", "failed"):
        return "disabled"
    if schedule["trigger_type"] == "schedule":
        if scheduled_for != schedule["run_at"]:
            return f"superseded: the schedule now runs at {utc_iso(schedule['run_at'])}"
        return None
    if scheduled_for < schedule["trigger_effective_from"]:
        return "superseded: scheduled before the trigger's last change"
    try:
        spec = parse_cron(schedule["cron"])
    except CronError:
        return "disabled: stored cron is invalid"
    if not is_fire_instant(spec, schedule["timezone"], scheduled_for):
        return (
            f"superseded: {schedule['cron']!r} in {schedule['timezone']} "
            f"does not fire at {utc_iso(scheduled_for)}"
        )
    return None


def clock_payload(fire: ClockFire, schedule: dict, *, fired_at: datetime) -> dict:
    """The fixed `payload.WorkflowClockTrigger.v1`; nothing from outside is merged into it."""
    payload = {
        "triggerType": schedule["trigger_type"],
        "scheduleId": str(fire.schedule_id),
        "scheduledFor": utc_iso(fire.scheduled_for),
        "firedAt": utc_iso(fired_at),
        "timezone": schedule["timezone"],
        "workflowId": str(schedule["workflow_id"]),
        "workflowVersion": schedule["workflow_version"],
    }
    if schedule["trigger_type"] == "recurring":
        payload["cron"] = schedule["cron"]
    return payload


_CLAIM_START = """
WITH run AS (
    INSERT INTO workflow_runs
        (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
         trigger_type, trigger_metadata, trigger_fire_key)
    VALUES (%(run_id)s, %(tenant)s, %(workflow_id)s, %(workflow_version)s, 'queued',
            %(payload)s, %(schema_ref)s, %(trigger_type)s, %(metadata)s, %(key)s)
    ON CONFLICT (trigger_fire_key) WHERE trigger_fire_key IS NOT NULL DO NOTHING
    RETURNING run_id
), notify AS (
    SELECT pg_notify(%(channel)s, %(notice)s) FROM run
)
SELECT (SELECT run_id FROM run), (SELECT count(*) FROM notify)
"""


def _launch_start(conn, start: EventStart | ManualStart) -> LaunchResult:
    if not start.tenant:
        raise ValueError("tenant is required")
    if not isinstance(start.payload, dict):
        raise ValueError("payload must be a JSON object")
    if isinstance(start, EventStart):
        if not start.event_id:
            raise ValueError("event id is required: events are deduplicated on it")
        key = f"workflow-event:{start.tenant}:{start.workflow_id}:{start.event_id}"
        trigger_type, schema_ref = "event", start.payload_schema_ref
        metadata = {"eventName": start.event_name, "eventId": start.event_id}
    else:
        key = f"workflow-manual:{start.tenant}:{start.workflow_id}:{start.request_id}"
        trigger_type, schema_ref = "manual", None
        metadata = {"requestedBy": start.requested_by, "requestId": start.request_id}
    run_id = uuid.uuid4()
    created, _ = conn.execute(
        _CLAIM_START,
        {
            "run_id": run_id,
            "tenant": start.tenant,
            "workflow_id": start.workflow_id,
            "workflow_version": start.workflow_version,
            "payload": json.dumps(start.payload),
            "schema_ref": schema_ref,
            "trigger_type": trigger_type,
            "metadata": json.dumps(metadata),
            "key": key,
            "channel": NOTIFY_CHANNEL,
            "notice": json.dumps({"runId": str(run_id), "tenant": start.tenant}),
        },
    ).fetchone()
    if created is None:
        existing = conn.execute(
            "SELECT run_id FROM workflow_runs WHERE trigger_fire_key = %s", (key,)
        ).fetchone()
        return LaunchResult("duplicate", key, existing[0], "already started")
    return LaunchResult("launched", key, created)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as an aware datetime; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def scheduled_for_from_job_name(job_name: str, cronjob_name: str | None = None) -> datetime:
    """The instant the CronJob controller scheduled, from its Job name `<cronjob>-<unix minutes>`."""
    prefix, sep, minutes = job_name.rpartition("-")
    if not sep or not minutes.isdigit() or (cronjob_name and prefix != cronjob_name):
        expected = f"{cronjob_name or '<cronjob>'}-<unix minutes>"
        raise ValueError(
            f"Job name {job_name!r} carries no scheduled time: expected {expected}, as the "
            "CronJob controller names Jobs. A manual `kubectl create job --from=cronjob/...` "
            "has no scheduled fire; use `wfclock backfill` or a manual start instead"
        )
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(minutes=int(minutes))
    if not datetime(2000, 1, 1, tzinfo=UTC) <= instant <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError(
            f"Job name {job_name!r} ends in {minutes}, which is not a plausible scheduled "
            "time in unix minutes"
        )
    return instant
