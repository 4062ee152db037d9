"""The accounting sweep: every owed fire ends in the ledger, launched or recorded as missed.

A thread of the operator runs it every `SWEEP_SECONDS` (with jitter). It holds a Postgres
advisory lock while it works, so of several operator replicas one sweeps at a time. See
`core.accounting` for what is owed and decided; this module carries the plan out: a fire within
its deadline goes through the launcher (its fire key makes it one run, whoever else delivers
it), a fire beyond it is claimed as missed, with its reason, in the ledger and the status.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import text

from wfclock.controller import launcherpods
from wfclock.controller.context import Context
from wfclock.controller.owed import account_change, launch_traced, ref, report_skipped
from wfclock.core.accounting import (
    accounting_horizon,
    job_creation_deadline,
    owed_fires,
    plan_accounting,
    policy_dropped,
)
from wfclock.core.fires import fire_key_for, utc_iso
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration

log = logging.getLogger("wfclock.accounting")

SWEEP_SECONDS = 30
ADVISORY_LOCK = 0x77667363  # "wfsc": one sweeper at a time across replicas


# A Job list taken this long after a fire's Job-creation deadline shows every Job the CronJob
# controller made for it: clock skew between kube-controller-manager and the operator, and a
# create the controller decided in time that reaches the API server late (its client-side rate
# limit, a slow API server), stay within it.
SNAPSHOT_SLACK = timedelta(seconds=60)
# Fires named in one aggregated Event at most (its message is cut at 1,000 characters).
FIRES_PER_EVENT = 20


class FireJobs:
    """Whether a fire's Job may still deliver it, for one sweep: from one list of wfclock's fire
    Jobs (`Kube.active_fire_jobs`, taken when first needed) where that is safe, else from a GET
    of the Job (`Kube.job_active`), as every fire cost before.

    The list is trusted for a fire only when it was taken at least `SNAPSHOT_SLACK` after the
    fire's Job-creation deadline (`job_creation_deadline`: the CronJob's
    `startingDeadlineSeconds`, past which the CronJob controller creates no Job for it). A Job
    absent or finished then cannot appear, or become active, later, so the fire may be recorded
    missed; a Job active in the list is taken as still trying (it may have finished since: the
    next sweep looks again). A list taken before that instant may miss a Job created after it,
    so such a fire, and every fire of a one-time schedule (its Job is released by the operator
    itself, not by a controller with a deadline), is looked up by its own GET.
    """

    def __init__(self, ctx: Context):
        self._ctx = ctx
        self.taken_at: datetime | None = None
        self._active: set[tuple[str, str]] = set()
        self._failed = False

    def _settled(self, row: dict, fire: datetime) -> bool:
        if row["trigger_type"] != "recurring" or self._failed:
            return False
        after = fire + job_creation_deadline(row) + SNAPSHOT_SLACK
        if self.taken_at is None and (self._ctx.now() < after or not self._take()):
            return False  # no list needed yet, or none to be had: a GET of the Job
        return self.taken_at >= after

    def _take(self) -> bool:
        """Lists the fire Jobs. A list that fails (a page's continue token expired, a timeout,
        a namespace the operator may not read) is never trusted: every fire's Job is read on its
        own for the rest of the pass, as without the list."""
        at = self._ctx.now()  # read before the list: never later than it
        try:
            active = self._ctx.kube.active_fire_jobs(self._ctx.settings.namespaces)
        except Exception as exc:  # noqa: BLE001 - the GET of each fire's Job is always safe
            log.warning("listing the fire Jobs failed, reading each fire's Job instead: %s", exc)
            self._failed = True
            return False
        self.taken_at, self._active = at, active
        return True

    def active(self, row: dict, fire: datetime) -> bool:
        """Whether the Job of `fire` exists, is released and has not finished."""
        name = _fire_job_name(row, fire)
        if self._settled(row, fire):
            return (row["namespace"], name) in self._active
        return self._ctx.kube.job_active(row["namespace"], name)

    def stuck(self, row: dict, fires: list[datetime]) -> datetime | None:
        """The first of `fires`, launched by the sweep, whose Job is still active: stuck (a
        recurring schedule's CronJob, `Forbid`, runs one Job at a time; a one-time schedule
        has one). Read as `active` reads it: never from a list taken too early to show it."""
        return next((fire for fire in fires if self.active(row, fire)), None)


def account(
    ctx: Context,
    row: dict,
    now: datetime,
    ledger_horizon: datetime | None = None,
    jobs: FireJobs | None = None,
) -> bool:
    """Carries out the accounting plan of one schedule; True when anything was recorded.
    `jobs`: the sweep's view of the fire Jobs (None: one of this call's own)."""
    jobs = jobs or FireJobs(ctx)
    if (
        ledger_horizon
        and row["trigger_type"] == "recurring"
        and row["accounted_until"] < ledger_horizon
    ):
        # Before the pruned horizon the ledger cannot tell a fire that never came from one whose
        # row was pruned, and none of those fires may launch any more: nothing left to account.
        row = {**row, "accounted_until": ledger_horizon}
    owed = owed_fires(row, now)
    if row["trigger_type"] == "schedule":
        owed = [row["run_at"]]
    keys = [fire_key_for(row["schedule_id"], fire) for fire in owed]
    plan = plan_accounting(row, store.recorded_keys(ctx.engine, keys), now)
    changed = False
    skipped: dict[str, list[datetime]] = {}
    recovered: list[datetime] = []
    if plan.launch:
        # A fire the policy drops is handed over however late, to be recorded with the policy's
        # reason: with the registration it was judged by, so that a policy edited since the
        # row was read (which judges by the row at launch) never starts it past its deadline.
        dropped = policy_dropped(row, owed)
        judged_by = Registration(row["cron"], row["timezone"], row.get("dst_policy"))
        with ctx.engine.raw_connection() as raw:
            conn = raw.driver_connection
            for fire in plan.launch:
                registration = judged_by if fire in dropped else None
                request = ClockFire(row["schedule_id"], fire, "recovery", registration)
                result = launch_traced(conn, request, now)
                conn.commit()
                log.info("recovered fire %s of %s: %s", utc_iso(fire), row["name"], result.outcome)
                if result.outcome == "launched":
                    recovered.append(fire)
                elif result.outcome in ("skipped", "buffered"):
                    skipped.setdefault(f"{result.outcome}: {result.reason}", []).append(fire)
                changed = True
    if recovered:
        _report_recovered(ctx, row, recovered)
        stuck = jobs.stuck(row, recovered)
        if stuck is not None:
            _report_stuck(ctx, row, stuck)
    report_skipped(ctx, row, skipped)
    accounted_until = plan.accounted_until
    missed: list[tuple[datetime, str]] = []
    for fire, reason in plan.missed:
        if jobs.active(row, fire):
            # Its Job is still trying: the fire is not missed yet. Look again next sweep.
            accounted_until = min(accounted_until, fire - timedelta(seconds=1))
            continue
        key = fire_key_for(row["schedule_id"], fire)
        if store.record_missed(ctx.engine, row, fire, key, reason):
            missed.append((fire, reason))
            changed = True
        elif not store.fire_recorded(ctx.engine, key):
            # The row changed under the plan (paused, disabled, re-triggered): the miss no
            # longer holds and nothing was recorded, so the watermark stays before the fire and
            # the next sweep accounts it under the row as it is now (found by the soak).
            accounted_until = min(accounted_until, fire - timedelta(microseconds=1))
    _report_missed(ctx, row, missed)
    if accounted_until is not None:
        store.advance_accounting(ctx.engine, row, accounted_until)
    return changed


def _chunks(fires: list, size: int = FIRES_PER_EVENT) -> list[list]:
    return [fires[i : i + size] for i in range(0, len(fires), size)]


def _report_recovered(ctx: Context, row: dict, fires: list[datetime]) -> None:
    """One Event for the fires this sweep launched itself (per `FIRES_PER_EVENT`), posted off
    the sweep's path."""
    for chunk in _chunks(fires):
        if len(chunk) == 1:
            message = f"launched the fire of {utc_iso(chunk[0])}, which its Job did not record"
        else:
            listed = ", ".join(utc_iso(fire) for fire in chunk)
            message = (
                f"launched the {len(chunk)} fires of {listed}, which their Jobs did not record"
            )
        ctx.kube.event_later(ref(row), "Normal", "FireRecovered", message)


def _report_missed(ctx: Context, row: dict, missed: list[tuple[datetime, str]]) -> None:
    """One Event for the fires this sweep recorded missed (per `FIRES_PER_EVENT`), naming each
    and the latest one's reason (every fire's own is in the ledger), posted off the sweep's
    path."""
    for chunk in _chunks(missed):
        fire, reason = chunk[-1]
        if len(chunk) == 1:
            message = f"{utc_iso(fire)}: {reason}"
        else:
            listed = ", ".join(utc_iso(f) for f, _ in chunk)
            message = f"{len(chunk)} fires missed: {listed}; the latest {reason}"
        ctx.kube.event_later(ref(row), "Warning", "FireMissed", message)


def _report_stuck(ctx: Context, row: dict, fire: datetime) -> None:
    """A fire the operator had to launch itself while its Job was still active: the Job is stuck
    (its pod cannot start, or the launcher hangs). Say why, once, as an Event and in the status."""
    job_name = _fire_job_name(row, fire)
    if f"of Job {job_name} " in (row.get("fire_problem") or ""):
        return  # its pod's own problem is recorded already (launcherpods), with its reason
    if not ctx.kube.job_active(row["namespace"], job_name):
        return
    cause = ctx.kube.stuck_cause(row["namespace"], job_name)
    problem = f"Job {job_name} could not deliver the fire of {utc_iso(fire)}: {cause}"
    if store.set_fire_problem(ctx.engine, row["schedule_id"], problem):
        ctx.kube.event_later(ref(row), "Warning", "FireStuck", problem)


def _fire_job_name(row: dict, fire: datetime) -> str:
    """The Job that delivers `fire`: the one-time Job, or the CronJob controller's Job."""
    if row["trigger_type"] == "schedule":
        return row["registered_name"]
    return f"{row['registered_name']}-{int(fire.timestamp()) // 60}"


def _release_failed(schedule_id, error: Exception) -> None:
    """A buffered fire the sweep could not release stays buffered (tried again next sweep);
    the other schedules' fires and the accounting go on."""
    log.warning("releasing the buffered fire of schedule %s failed: %s", schedule_id, error)


def sweep(ctx: Context, now: datetime | None = None, on_change=None) -> int:
    """One pass over the scheduled schedules; returns how many had fires recorded. Skipped
    (returns -1) while another replica holds the sweep."""
    now = now or ctx.now()
    with ctx.engine.connect() as lock_conn:
        if not lock_conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK}
        ).scalar():
            return -1
        try:
            try:
                launcherpods.report(ctx, on_change)
            except Exception as exc:  # noqa: BLE001 - the accounting below must still run
                log.warning("checking launcher pods failed: %s", exc)
            changed = store.release_buffered_fires(ctx.engine, on_error=_release_failed)
            horizon = store.ledger_horizon(ctx.engine)
            jobs = FireJobs(ctx)
            for row in store.live_schedules(ctx.engine, ctx.settings.namespaces):
                try:
                    if row["status"] != "scheduled":
                        # Paused or disabled (an invalid edit): the fires owed from before
                        # it that no Job recorded are recorded as its Jobs would be now
                        # (paused, disabled); see `owed`.
                        until = accounting_horizon(row, now)
                        last, recorded = account_change(ctx, row, until, horizon)
                        if last is not None:
                            store.advance_accounting(ctx.engine, row, last)
                        if recorded:
                            changed += 1
                            if on_change is not None:
                                on_change(row["namespace"], row["name"])
                    elif account(ctx, row, now, horizon, jobs):
                        changed += 1
                        if on_change is not None:
                            on_change(row["namespace"], row["name"])
                except Exception as exc:  # noqa: BLE001 - one schedule must not stop the sweep
                    log.warning(
                        "accounting of %s/%s failed: %s", row["namespace"], row["name"], exc
                    )
            return changed
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
            lock_conn.commit()
