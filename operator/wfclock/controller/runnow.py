"""Run now: the `wfclock.dev/run-now: <request id>` annotation starts one manual run of a
schedule through the launcher, GitOps-friendly and idempotent.

The request id is the claim: the ledger holds `workflow-schedule-run-now:{scheduleId}:{id}` once,
so re-applying the same annotation, a reconcile after a restart, or a second operator replica
starts nothing more. A paused, invalid or deleted schedule refuses the request (the refusal is
recorded under the same key, so the id is spent: a later resume does not start it) and says why
in a Warning Event. `status.runNow` holds the answer to the latest request.
"""

from __future__ import annotations

import logging
import uuid

from wfclock import tracing
from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.core.fires import parse_instant
from wfclock.core.runcontrol import (
    RUN_NOW_ANNOTATION,
    TRACEPARENT_ANNOTATION,
    request_id_problem,
    run_now_key,
)
from wfclock.launcher import RunNow, launch

log = logging.getLogger("wfclock.runnow")
EPOCH = "1970-01-01T00:00:00Z"


def requested_by(meta: dict) -> str:
    """Who set the annotation, from `managedFields`: the field manager of the latest write of
    `metadata.annotations["wfclock.dev/run-now"]`, with its operation and time."""
    field = f"f:{RUN_NOW_ANNOTATION}"

    def annotations_of(entry: dict) -> dict:
        metadata = (entry.get("fieldsV1") or {}).get("f:metadata") or {}
        return metadata.get("f:annotations") or {}

    writers = [e for e in meta.get("managedFields") or [] if field in annotations_of(e)]
    if not writers:
        return "unknown"
    latest = max(writers, key=lambda e: parse_instant(str(e.get("time") or EPOCH)))
    manager, operation = latest.get("manager", "unknown"), latest.get("operation", "?")
    return f"{manager} ({operation} at {latest.get('time', '?')})"


def answer(ctx: Context, meta: dict, status: dict, row: dict | None) -> dict | None:
    """Answers the schedule's run-now request, once; returns `status.runNow` (None: no request
    was ever made). `row` is the state row after this reconcile (None: never registered)."""
    annotations = meta.get("annotations") or {}
    request_id = annotations.get(RUN_NOW_ANNOTATION)
    answered = status.get("runNow")
    if not request_id or (answered and answered.get("requestId") == request_id):
        return answered
    who = requested_by(meta)
    ref = ref_of(meta)
    problem = request_id_problem(request_id)
    if problem is None and row is None:
        problem = f"the schedule is invalid: {status.get('lastError') or 'see its Ready condition'}"
    if problem is not None:
        ctx.kube.event(
            ref, "Warning", "RunNowRefused", f"run-now {request_id!r} refused: {problem}"
        )
        return {
            "requestId": request_id,
            "outcome": "refused",
            "reason": problem,
            "requestedBy": who,
        }
    request = RunNow(
        uuid.UUID(meta["uid"]), request_id, who, annotations.get(TRACEPARENT_ANNOTATION)
    )
    with (
        tracing.span(
            "wfclock.run-now.request",
            trace_key=run_now_key(request.schedule_id, request_id),
            schedule_id=request.schedule_id,
            request_id=request_id,
            requested_by=who,
        ) as span,
        ctx.engine.raw_connection() as raw,
    ):
        result = launch(raw.driver_connection, request, now=ctx.now())
        raw.commit()
        span.set(outcome=result.outcome, reason=result.reason, run_id=result.run_id)
    view = {"requestId": request_id, "outcome": result.outcome, "requestedBy": who}
    if result.run_id:
        view["runId"] = str(result.run_id)
    if result.outcome == "launched":
        message = f"run-now {request_id!r} started run {result.run_id} (requested by {who})"
        ctx.kube.event(ref, "Normal", "RunNow", message)
    elif result.outcome == "skipped":
        view["outcome"], view["reason"] = "refused", result.reason
        message = f"run-now {request_id!r} refused: {result.reason}"
        ctx.kube.event(ref, "Warning", "RunNowRefused", message)
    else:  # answered before (another replica, or before a restart): nothing more starts
        view["reason"] = f"answered before: {result.reason}"
    log.info("run-now %s of %s/%s: %s", request_id, meta["namespace"], meta["name"], view)
    return view
