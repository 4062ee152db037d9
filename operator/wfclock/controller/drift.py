"""Keeping what the operator registered in step with what Kubernetes holds: a CronJob deleted,
suspended or edited by hand, or a pending one-time Job deleted, is put back. Checked on every
change of a child (its watch events) and, in case an event was missed, on a resync of all
children every `RESYNC_SECONDS` or so (with jitter)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from wfclock.controller.context import Context
from wfclock.controller.reconciler import has_ended, keep_launcher_secret, restore
from wfclock.core.drift import cronjob_drift, one_time_job_missing, stale_child
from wfclock.core.fires import fire_key_for
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.db import store

log = logging.getLogger("wfclock.operator")

RESYNC_SECONDS = 300


def _ref(row: dict) -> dict:
    return {"name": row["name"], "namespace": row["namespace"], "uid": str(row["schedule_id"])}


def _restore(ctx: Context, row: dict, why: str) -> None:
    body = ctx.kube.get_schedule(row["namespace"], row["name"])
    if body is not None and body["metadata"].get("generation", 0) > row["generation"]:
        # A newer generation is being registered (its child first, its state row next): its
        # own reconcile finishes it, and kopf retries that reconcile until it does.
        log.info(
            "%s/%s: %s while generation %s registers",
            row["namespace"],
            row["name"],
            why,
            body["metadata"]["generation"],
        )
        return
    log.info("restoring %s/%s: %s", row["namespace"], row["name"], why)
    ctx.kube.event(_ref(row), "Warning", "ChildRestored", f"{why}; restored")
    restore(ctx, row["namespace"], row["name"])


def _registering(ctx: Context, row: dict) -> bool:
    """Whether a newer generation of the schedule is being registered: its child is written
    first (perhaps an old child patched in place, as old as it was) and its state row next, so
    until then the row names another child. That reconcile removes older children itself, and
    kopf retries it until it does."""
    body = ctx.kube.get_schedule(row["namespace"], row["name"])
    return body is not None and body["metadata"].get("generation", 0) > row["generation"]


def _registered_row(ctx: Context, body: dict, kind: str) -> dict | None:
    """The state row of the schedule that registered this child, when it is its registration."""
    metadata = body["metadata"]
    uid = (metadata.get("labels") or {}).get(SCHEDULE_UID_LABEL)
    if not uid:
        return None
    row = store.get_schedule(ctx.engine, uuid.UUID(uid))
    if row is None or (row["namespace"], row["registered_kind"], row["registered_name"]) != (
        metadata.get("namespace"),
        kind,
        metadata["name"],
    ):
        return None  # not its registration (or a label copied into another namespace)
    return row


def cronjob_changed(ctx: Context, body: dict, deleted: bool) -> None:
    row = _registered_row(ctx, body, "CronJob")
    if row is None:
        return
    why = cronjob_drift(row, None if deleted else body)
    if why:
        _restore(ctx, row, why)


def one_time_job_deleted(ctx: Context, body: dict) -> None:
    row = _registered_row(ctx, body, "Job")
    if row is None:
        return
    fired = store.fire_recorded(ctx.engine, fire_key_for(row["schedule_id"], row["run_at"]))
    why = one_time_job_missing(row, None, fired)
    if why:
        _restore(ctx, row, why)


def resync(ctx: Context) -> int:
    """Compares every registered schedule with the children that exist; restores drift and
    removes children no schedule registers any more. Two list calls for all schedules, whatever
    their number. Returns how many were restored or removed."""
    rows = store.registered_schedules(ctx.engine, ctx.settings.namespaces)
    cronjobs, jobs = ctx.kube.list_children(ctx.settings.namespaces)
    listed = {c["metadata"].get("uid") for c in cronjobs.values()}
    for uid in [uid for uid in list(ctx.judged_cronjobs) if uid not in listed]:
        ctx.judged_cronjobs.pop(uid, None)  # deleted unseen (a watch gap, a label removed)
    pending = [r for r in rows if r["trigger_type"] == "schedule" and r["status"] != "disabled"]
    keys = [fire_key_for(r["schedule_id"], r["run_at"]) for r in pending]
    fired = store.recorded_keys(ctx.engine, keys)
    for namespace in sorted({r["namespace"] for r in rows}):
        try:  # a Secret deleted or edited by hand, or a rotated credential
            tenant = ctx.kube.namespace_tenant(namespace)  # the namespace's, not a row's
            if tenant and any(r["tenant"] == tenant for r in rows if r["namespace"] == namespace):
                keep_launcher_secret(ctx, namespace, tenant, force=True)
        except Exception as exc:  # noqa: BLE001 - the next resync tries again
            log.warning("launcher Secret of %s: %s", namespace, exc)
    restored = 0
    for row in rows:
        child_key = (row["namespace"], row["registered_name"])
        if row["trigger_type"] == "recurring" and has_ended(ctx, row):
            why = "its bounds are reached (activeUntil or maxFires)"
        elif row["trigger_type"] == "recurring":
            why = cronjob_drift(row, cronjobs.get(child_key))
        else:
            key = fire_key_for(row["schedule_id"], row["run_at"])
            why = one_time_job_missing(row, jobs.get(child_key), key in fired)
        if why:
            try:
                _restore(ctx, row, why)
                restored += 1
            except Exception as exc:  # noqa: BLE001 - the next resync tries again
                log.warning("restoring %s/%s failed: %s", row["namespace"], row["name"], exc)
    return restored + remove_stale_children(ctx, rows, cronjobs, jobs)


def _created(body: dict) -> datetime | None:
    stamp = body["metadata"].get("creationTimestamp")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def remove_stale_children(ctx: Context, rows: list[dict], cronjobs: dict, jobs: dict) -> int:
    """Deletes the CronJobs and one-time Jobs whose live schedule registers another child (left
    by an operator killed between a registration's state row and its removal of older children:
    the next reconcile sees the registration unchanged and lists nothing). The row is read again
    before each delete, in case a reconcile has just registered that child."""
    by_uid = {str(row["schedule_id"]): row for row in rows}
    now = ctx.now()
    removed = 0
    for kind, children in (("CronJob", cronjobs), ("Job", jobs)):
        for (namespace, name), body in children.items():
            labels = body["metadata"].get("labels") or {}
            if kind == "Job" and labels.get(REGISTRATION_LABEL) != "one-time":
                continue  # a CronJob's fire Jobs go with their CronJob
            row = by_uid.get(labels.get(SCHEDULE_UID_LABEL, ""))
            if row is not None and row["namespace"] != namespace:
                continue  # a label copied into another namespace: not the schedule's child
            if not stale_child(row, kind, name, _created(body), now):
                continue
            row = store.get_schedule(ctx.engine, row["schedule_id"])
            why = stale_child(row, kind, name, _created(body), now)
            if not why or _registering(ctx, row):
                continue
            try:
                log.info("removing %s/%s: %s", namespace, name, why)
                if kind == "CronJob":
                    ctx.kube.delete_cronjob(namespace, name)
                else:
                    ctx.kube.delete_job(namespace, name)
                ctx.kube.event(_ref(row), "Normal", "ChildRemoved", f"{why}; removed")
                removed += 1
            except Exception as exc:  # noqa: BLE001 - the next resync tries again
                log.warning("removing %s/%s failed: %s", namespace, name, exc)
    return removed
