"""Run control, pure parts: run statuses, run-now request ids and keys, and W3C trace contexts.

Imported on every fire's path (the traceparent): the standard library only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

# The statuses a worker writes when a run is over (compared case-insensitively); any other
# status, `queued` and `running` included, is a run still going. The database agrees:
# `wfclock_run_finished` (migration 0005) decides overlap policies by the same list.
FINISHED_RUN_STATUSES = frozenset(
    {"succeeded", "completed", "failed", "cancelled", "canceled", "timed_out", "terminated"}
)
# The finished statuses that count as a failure (a cancelled run is not one).
FAILED_RUN_STATUSES = frozenset({"failed", "timed_out", "terminated"})

OVERLAP_POLICIES = ("Allow", "Skip", "BufferOne")

RUN_NOW_ANNOTATION = "wfclock.dev/run-now"
TRACEPARENT_ANNOTATION = "wfclock.dev/traceparent"

_REQUEST_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?")
REQUEST_ID_RULE = (
    "1-128 letters, digits and '. _ : -', starting and ending with a letter or digit "
    "(a date, a ticket, a UUID)"
)
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def run_finished(status: str | None) -> bool:
    return (status or "").lower() in FINISHED_RUN_STATUSES


def run_failed(status: str | None) -> bool:
    return (status or "").lower() in FAILED_RUN_STATUSES


def request_id_problem(request_id: str) -> str | None:
    """Why `request_id` cannot name a run-now request, or None when it can."""
    if _REQUEST_ID.fullmatch(request_id or ""):
        return None
    return f"{request_id!r} is not accepted as a run-now request id: {REQUEST_ID_RULE}"


def run_now_key(schedule_id: uuid.UUID | str, request_id: str) -> str:
    """`workflow-schedule-run-now:{scheduleId}:{requestId}`: the ledger key of a run-now request
    (distinct from every fire key, so a request never spends a clock fire's key)."""
    return f"workflow-schedule-run-now:{schedule_id}:{request_id}"


def valid_traceparent(value: str | None) -> bool:
    """A W3C trace context of version 00 whose trace and span ids are not all zeros."""
    found = _TRACEPARENT.fullmatch(value or "")
    return bool(found) and set(found[1]) != {"0"} and set(found[2]) != {"0"}


def traceparent_for(key: str, parent: str | None = None, span_id: str | None = None) -> str:
    """The trace context a fire hands to its run: a child of `parent` when that is a valid
    traceparent, otherwise a trace of the fire's own whose id derives from its key (so every
    delivery of one fire, by its Job or by the operator, belongs to the same trace). The span id
    is the launcher's claim, new for each delivery."""
    span = span_id or secrets.token_hex(8)
    if parent and valid_traceparent(parent):
        _, trace_id, _, flags = parent.split("-")
        return f"00-{trace_id}-{span}-{flags}"
    trace_id = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"00-{trace_id}-{span}-01"
