"""The one launcher service: every workflow run, whatever started it, is created here.

Clock fires, event-triggered starts and manual starts share the same rules: a claim on a unique
key (the fire key, the event id, or a request id), provenance on the run, a payload of a known
shape, and a notification to workers, all in one transaction. A clock fire additionally re-reads
the schedule's state under a row lock, so a Job created before a pause, delete or edit cannot
start a run it should not, and records every delivery in the fire ledger.

This module sits on every fire's path: it works on a psycopg connection handed to it and imports
only the pure fire keys and fire-time maths (no SQLAlchemy, pydantic, kopf or Kubernetes client),
to keep the launcher's cold start short.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from wfclock import tracing
from wfclock.core.dst import is_shifted_fire, next_fire, refusal
from wfclock.core.fires import PAYLOAD_SCHEMA_REF, fire_key_for, utc_iso
from wfclock.core.firetime import CronError, is_fire_instant, parse_cron
from wfclock.core.runcontrol import request_id_problem, run_now_key, traceparent_for

NOTIFY_CHANNEL = "wfclock_runs"


class UnknownSchedule(LookupError):
    """No state row for the schedule id: unusable input, nothing is written."""


class NotAFire(ValueError):
    """An instant the schedule's own cron does not fire at, asked for without a Job of the
    CronJob controller behind it (backfill, catch-up, a hand-made request): unusable input,
    nothing is written."""


class FireNotDue(ValueError):
    """A fire for an instant still in the future: unusable input, nothing is written (the real
    fire must still be able to claim its key when its time comes)."""


# Clock skew tolerated between the CronJob controller's node and the launcher's.
EARLY_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Registration:
    """The trigger a fire's Job was created for (from its environment): a recurring Job knows its
    cron and zone, a one-time Job has neither. The launcher refuses a fire whose registration no
    longer matches the schedule, without reading the schedule first."""

    cron: str | None = None
    timezone: str | None = None
    # The recurring schedule's daylight-saving policy (None: registered before there were
    # policies; the CronJob's raw fires all run).
    dst_policy: str | None = None


@dataclass(frozen=True)
class ClockFire:
    schedule_id: uuid.UUID
    scheduled_for: datetime
    source: str  # the Job name, "backfill", "catch-up" ...
    # None: unknown (backfill, catch-up); the launcher reads it from the schedule under a lock.
    registration: Registration | None = None
    # A W3C traceparent the fire continues (the Job's TRACEPARENT); None: a trace of its own.
    trace_parent: str | None = None


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
class RunNow:
    """A run-now request for a schedule (the `wfclock.dev/run-now` annotation): one manual run,
    whatever the schedule's overlap policy, refused while the schedule is paused or invalid;
    claimed in the ledger by the request id, so a request is answered once."""

    schedule_id: uuid.UUID
    request_id: str
    requested_by: str = ""
    trace_parent: str | None = None


@dataclass(frozen=True)
class LaunchResult:
    # launched | duplicate | skipped | buffered (waits for the schedule's running run)
    outcome: str
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


def launch(
    conn, request: ClockFire | EventStart | ManualStart | RunNow, *, now: datetime
) -> LaunchResult:
    """Starts at most one run for `request`, atomically, on a psycopg connection.

    A clock fire whose registration is known is one statement (one round trip), which keeps the
    service close to a bare insert's speed; otherwise the schedule is read under a row lock first.

    With tracing on (`wfclock.tracing`), a clock fire and a run-now request are each a span, a
    child of the request's traceparent (the Job's TRACEPARENT) or of the caller's span, and the
    run's stored traceparent is that span's, so the workers' spans are its children.
    """
    if isinstance(request, ClockFire):
        key = fire_key_for(request.schedule_id, request.scheduled_for)
        name, instant = "wfclock.fire", utc_iso(request.scheduled_for)
    elif isinstance(request, RunNow):
        key, name, instant = (
            run_now_key(request.schedule_id, request.request_id),
            "wfclock.run-now",
            None,
        )
    else:
        return _launch(conn, request, now, None)
    with tracing.span(
        name,
        parent=request.trace_parent,
        trace_key=key,
        schedule_id=request.schedule_id,
        fire_key=key,
        scheduled_for=instant,
        source=getattr(request, "source", None),
    ) as span:
        result = _launch(conn, request, now, span.traceparent)
        span.set(outcome=result.outcome, reason=result.reason, run_id=result.run_id)
        return result


def _launch(conn, request, now: datetime, traceparent: str | None) -> LaunchResult:
    if isinstance(request, ClockFire) and request.registration and conn.autocommit:
        return _launch_clock_fire(conn, request, request.registration, now, traceparent)
    with conn.transaction():
        if isinstance(request, RunNow):
            return _run_now(conn, request, traceparent)
        if not isinstance(request, ClockFire):
            return _launch_start(conn, request)
        registration = request.registration
        if registration is None:
            row = conn.execute(_REGISTRATION, (request.schedule_id,)).fetchone()
            if row is None:
                raise UnknownSchedule(
                    f"no schedule with id {request.schedule_id} in workflow_schedules"
                )
            registration = Registration(*row)
            if registration.cron and not _is_fire(registration, request.scheduled_for):
                raise NotAFire(
                    f"{registration.cron!r} in {registration.timezone} does not fire at "
                    f"{utc_iso(request.scheduled_for)}"
                )
        return _launch_clock_fire(conn, request, registration, now, traceparent)


_REGISTRATION = (
    "SELECT cron, timezone, dst_policy FROM workflow_schedules WHERE schedule_id = %s FOR UPDATE"
)

# One statement (the function `wfclock_fire`, migrations 0004 to 0008): lock the schedule row
# and decide from its state (Postgres is authoritative at fire time) and its overlap policy,
# claim the fire key, and only when this delivery claimed it: insert the run with its fixed
# payload (or leave the fire buffered), update the schedule state and notify workers; a
# duplicate delivery is counted. A fire the schedule's time policy drops (`p_refusal`, computed
# here from the registration) is recorded skipped with that reason. A tenant's launcher login may run it for its own tenant's
# schedules only, and has no other right on any table.
_FIRE = """
SELECT r_outcome, r_run_id, r_reason FROM wfclock_fire(
    %(schedule_id)s, %(at)s, %(key)s, %(at_iso)s, %(now_iso)s, %(cron)s, %(timezone)s,
    %(is_fire)s, %(next_fire)s, %(run_id)s, %(source)s, %(schema_ref)s, %(channel)s,
    %(traceparent)s, %(refusal)s)
"""


def _launch_clock_fire(
    conn, fire: ClockFire, registration: Registration, now: datetime, traceparent: str | None
) -> LaunchResult:
    key = fire_key_for(fire.schedule_id, fire.scheduled_for)
    if fire.scheduled_for > now + EARLY_TOLERANCE:
        raise FireNotDue(
            f"fire for {utc_iso(fire.scheduled_for)} is not due yet (now {utc_iso(now)})"
        )
    run_id = uuid.uuid4()
    outcome, result_run_id, reason = conn.execute(
        _FIRE,
        {
            "key": key,
            "schedule_id": fire.schedule_id,
            "at": fire.scheduled_for,
            "at_iso": utc_iso(fire.scheduled_for),
            "now_iso": utc_iso(now),
            "cron": registration.cron,
            "timezone": registration.timezone,
            "is_fire": _is_fire(registration, fire.scheduled_for),
            "next_fire": _next_fire(registration, max(now, fire.scheduled_for)),
            "run_id": run_id,
            "source": fire.source,
            "schema_ref": PAYLOAD_SCHEMA_REF,
            "channel": NOTIFY_CHANNEL,
            # The fire's span (tracing on), else a child of the Job's TRACEPARENT.
            "traceparent": traceparent or traceparent_for(key, fire.trace_parent),
            "refusal": _refusal(registration, fire.scheduled_for),
        },
    ).fetchone()
    if outcome == "unknown":
        raise UnknownSchedule(f"no schedule with id {fire.schedule_id} in workflow_schedules")
    return LaunchResult(outcome, key, result_run_id, reason)


def _refusal(registration: Registration, instant: datetime) -> str | None:
    """Why the registration's time policy (daylight saving, `L`) drops the fire at `instant`;
    None: it runs (see `wfclock.core.dst.refusal`)."""
    if not registration.cron or not registration.timezone:
        return None
    try:
        spec = parse_cron(registration.cron)
        return refusal(spec, registration.timezone, registration.dst_policy, instant)
    except (CronError, KeyError):
        return None


# The function `wfclock_run_now` (migration 0005): lock the schedule, refuse a paused, invalid
# or deleted one (the refusal is recorded, so the id is spent), claim the request's key, insert
# the manual run and notify workers.
_RUN_NOW = """
SELECT r_outcome, r_run_id, r_reason, r_key
FROM wfclock_run_now(%(schedule_id)s, %(request_id)s, %(requested_by)s, %(run_id)s,
                     %(traceparent)s)
"""


def _run_now(conn, request: RunNow, traceparent: str | None) -> LaunchResult:
    problem = request_id_problem(request.request_id)
    if problem:
        raise InvalidStart(problem)
    key = run_now_key(request.schedule_id, request.request_id)
    outcome, run_id, reason, key = conn.execute(
        _RUN_NOW,
        {
            "schedule_id": request.schedule_id,
            "request_id": request.request_id,
            "requested_by": request.requested_by,
            "run_id": uuid.uuid4(),
            "traceparent": traceparent or traceparent_for(key, request.trace_parent),
        },
    ).fetchone()
    if outcome == "unknown":
        raise UnknownSchedule(f"no schedule with id {request.schedule_id} in workflow_schedules")
    return LaunchResult(outcome, key, run_id, reason)


def _next_fire(registration: Registration, after: datetime) -> datetime | None:
    """The registration's next fire after `after`, for the state row's `next_fire_at`."""
    if not registration.cron or not registration.timezone:
        return None
    try:
        spec = parse_cron(registration.cron)
        return next_fire(spec, registration.timezone, registration.dst_policy, after)
    except (CronError, KeyError):
        return None


def _is_fire(registration: Registration, instant: datetime) -> bool:
    """Whether the registration fires at `instant`: its cron does (robfig/cron semantics), or
    its daylight-saving policy makes a shifted fire there (after a gap; the operator's, never a
    CronJob's). Only noted on the run: a Job of the current cron and zone was made by the
    CronJob controller, which is the authority on timing; refusing it because this process's
    time-zone data differs from the controller's would spend the key of a real fire."""
    if not registration.cron or not registration.timezone:
        return False
    try:
        spec = parse_cron(registration.cron)
        return is_fire_instant(spec, registration.timezone, instant) or is_shifted_fire(
            spec, registration.timezone, registration.dst_policy, instant
        )
    except (CronError, KeyError):
        return False


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


class InvalidStart(ValueError):
    """An event or manual start wfclock refuses; the message says which field and why."""


_TENANT = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def start_key(kind: str, tenant: str, workflow_id: uuid.UUID, start_id: str) -> str:
    """`workflow-{event|manual}:{tenant}:{workflowId}:{id}`. The tenant is a DNS label and the
    id is percent-encoded, so no two (tenant, workflow, id) can spell the same key."""
    return f"workflow-{kind}:{tenant}:{workflow_id}:{quote(start_id, safe='')}"


def _launch_start(conn, start: EventStart | ManualStart) -> LaunchResult:
    if not _TENANT.fullmatch(start.tenant or ""):
        raise InvalidStart(
            f"tenant {start.tenant!r} is not accepted: a tenant is 1-63 lowercase letters, "
            "digits or '-', starting and ending with a letter or digit"
        )
    if not isinstance(start.payload, dict):
        raise InvalidStart("payload must be a JSON object")
    if isinstance(start, EventStart):
        if not start.event_id:
            raise InvalidStart("event id is required: events are deduplicated on it")
        key = start_key("event", start.tenant, start.workflow_id, start.event_id)
        trigger_type, schema_ref = "event", start.payload_schema_ref
        metadata = {"eventName": start.event_name, "eventId": start.event_id}
    else:
        if not start.request_id:
            raise InvalidStart("request id is required: manual starts are deduplicated on it")
        key = start_key("manual", start.tenant, start.workflow_id, start.request_id)
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
