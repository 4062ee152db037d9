"""WorkflowCalendars: derived into Postgres (the launcher's refusals read them there), and every
schedule that references one re-derives its status when it changes.

Level-triggered: a calendar is derived again on every change, on the operator's start (resume)
and by a timer (so the horizon of this year and next moves on at the turn of a year, and a
newer `holidays` package takes effect); each derivation replaces the calendar's rows whole.
"""

from __future__ import annotations

import logging

from wfclock.controller.context import Context
from wfclock.controller.reconciler import refresh_status
from wfclock.core.calendars import calendar_status, derive_calendar, validate_calendar
from wfclock.core.model import SpecError
from wfclock.core.status import condition
from wfclock.db import store

log = logging.getLogger("wfclock.operator")


def sync(ctx: Context, meta: dict, spec: dict, status: dict) -> dict:
    """Derives the calendar into Postgres and refreshes its schedules; returns its status. An
    invalid calendar's rows are removed: its schedules refuse their fires (fail closed)."""
    namespace, name = meta["namespace"], meta["name"]
    generation = meta.get("generation", 1)
    previous = status.get("conditions") or []
    try:
        parsed = validate_calendar(spec)
    except SpecError as error:
        store.delete_calendar(ctx.engine, namespace, name)
        refresh_users(ctx, namespace, name)
        ready = condition("Ready", False, error.reason, str(error), generation, previous, ctx.now())
        return {"phase": "Invalid", "observedGeneration": generation, "conditions": [ready]}
    derived = derive_calendar(parsed, ctx.now().date())
    store.write_calendar(ctx.engine, namespace, name, derived)
    users = refresh_users(ctx, namespace, name)
    message = f"{len(derived.excluded)} dates excluded until {derived.horizon_end.isoformat()}"
    ready = condition("Ready", True, "Derived", message, generation, previous, ctx.now())
    return {**calendar_status(derived, generation, users), "conditions": [ready]}


def forget(ctx: Context, meta: dict) -> None:
    """A deleted calendar: its schedules refuse their fires until it is back (fail closed)."""
    store.delete_calendar(ctx.engine, meta["namespace"], meta["name"])
    refresh_users(ctx, meta["namespace"], meta["name"])


def refresh_users(ctx: Context, namespace: str, name: str) -> int:
    """Re-derives the status of every schedule that references the calendar."""
    users = store.schedules_using_calendar(ctx.engine, namespace, name)
    for user in users:
        try:
            refresh_status(ctx, user["namespace"], user["name"])
        except Exception as exc:  # noqa: BLE001 - the schedule's own resync looks again
            log.warning(
                "refreshing %s/%s after calendar %s: %s", namespace, user["name"], name, exc
            )
    return len(users)
