"""Which fires a schedule owes, and what to do about each one not yet in the ledger.

Every fire of a schedule's current trigger ends in the ledger: launched, skipped with the reason
(paused, superseded, overlap, ...), buffered behind the schedule's running run (launched later by
the same key), or missed with the reason. Run-now requests have keys of their own (ledger kind
`manual`) and are never owed. A fire's own Job normally records it; when
it could not (a database outage beyond the Job's retries, a pod that never started, a CronJob
deleted by hand, a controller that was down), the operator's accounting sweep finds the fire
here and either launches it through the launcher (by its fire key, so never twice) while it is
within its deadline, or records it as missed. Pure: the state row, the keys already recorded and
the time are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wfclock.core.dst import mode_for, policy_fires_between, refusal
from wfclock.core.fires import fire_key_for, fires_between, utc_iso
from wfclock.core.firetime import parse_cron

SKIP_DEADLINE_SECONDS = 30  # the `skip` policy: a fire later than this is dropped
# A fire's own Job gets this long (at most half its deadline) before the sweep steps in.
SETTLE_SECONDS = 60
# At most this many fires are looked at per schedule and sweep (a week of 5-minute fires);
# older unaccounted fires are recorded as missed in later sweeps.
MAX_FIRES_PER_SWEEP = 2016


def _jitter(row: dict) -> timedelta:
    """A jittered fire's own Job claims it up to this long after its nominal instant."""
    return timedelta(seconds=row.get("jitter_seconds") or 0)


def _base_deadline(row: dict) -> timedelta:
    if row["missed_fires"] == "catchUp":
        return timedelta(seconds=row["catch_up_window_seconds"])
    if row["missed_fires"] == "skip":
        return timedelta(seconds=SKIP_DEADLINE_SECONDS)
    return timedelta(seconds=row["starting_deadline_seconds"])


def deadline(row: dict) -> timedelta:
    """How late a fire of this schedule may still start, by its missed-fire policy (plus its
    jitter, which its own Job waits)."""
    return _base_deadline(row) + _jitter(row)


def job_creation_deadline(row: dict) -> timedelta:
    """How late after a recurring fire the CronJob controller may still create its Job, at
    least: the CronJob's `startingDeadlineSeconds` (`builders.build_cronjob`: the schedule's,
    or `SKIP_DEADLINE_SECONDS` under `skip`). The controller skips a schedule time older than
    that, so after it no Job for the fire appears any more. The larger of the two whatever the
    policy: an edit away from `skip` reaches the CronJob a moment before this row."""
    seconds = max(row["starting_deadline_seconds"] or 0, SKIP_DEADLINE_SECONDS)
    return timedelta(seconds=seconds)


def settle(row: dict) -> timedelta:
    return min(timedelta(seconds=SETTLE_SECONDS), _base_deadline(row) / 2) + _jitter(row)


def accounting_horizon(row: dict, now: datetime) -> datetime:
    """Fires up to this instant are due for accounting."""
    return now - settle(row)


def _owed_from(row: dict) -> datetime:
    """Fires after this instant are owed (`accounted_until`, or the trigger's publish time)."""
    start = max(row["accounted_until"], row["trigger_effective_from"])
    if row["accounted_until"] <= row["trigger_effective_from"]:
        start -= timedelta(microseconds=1)  # a fire at the publish instant itself is owed
    return start


def owed_fires(row: dict, now: datetime) -> list[datetime]:
    """The current trigger's fires after `accounted_until` and up to the horizon."""
    start = _owed_from(row)
    horizon = accounting_horizon(row, now)
    if horizon <= start:
        return []
    if row["trigger_type"] == "schedule":
        return fires_between(row, start, horizon)
    return fires_between(row, start, horizon)[:MAX_FIRES_PER_SWEEP]


@dataclass
class Plan:
    launch: list[datetime] = field(default_factory=list)
    missed: list[tuple[datetime, str]] = field(default_factory=list)
    # The fires before this instant are accounted once the plan is carried out.
    accounted_until: datetime | None = None


def plan_accounting(row: dict, recorded: set[str], now: datetime) -> Plan:
    """What to do with each owed fire that the ledger does not hold yet."""
    if paused_over_run_at(row) and row["run_at"] <= accounting_horizon(row, now):
        plan = Plan(accounted_until=row["run_at"])
        if fire_key_for(row["schedule_id"], row["run_at"]) not in recorded:
            reason = "missed: the schedule was paused or invalid at its runAt"
            plan.missed.append((row["run_at"], reason))
        return plan
    fires = owed_fires(row, now)
    plan = Plan(accounted_until=fires[-1] if fires else None)
    limit = deadline(row)
    dropped = policy_dropped(row, fires)
    live = [fire for fire in fires if not quiet_at(row, fire) and fire not in dropped]
    latest = live[-1] if live else None
    for fire in fires:
        if fire_key_for(row["schedule_id"], fire) in recorded:
            continue
        if quiet_at(row, fire) or fire in dropped:
            # The launcher records it as skipped, whenever it comes: paused, or the time
            # policy's reason (a fire that was never to run is not missed).
            plan.launch.append(fire)
            continue
        late = now - fire
        if row["missed_fires"] == "latest" and fire != latest:
            plan.missed.append((fire, f"missed: a later fire ({utc_iso(latest)}) superseded it"))
        elif late <= limit:
            plan.launch.append(fire)
        else:
            plan.missed.append(
                (
                    fire,
                    f"missed: {utc_iso(fire)} passed {int(late.total_seconds())}s ago, beyond "
                    f"the {int(limit.total_seconds())}s deadline (policy {row['missed_fires']}); "
                    "no run was started",
                )
            )
    return plan


def policy_dropped(row: dict, fires: list[datetime]) -> set[datetime]:
    """Those of a recurring schedule's owed `fires` (the CronJob's fires and the shifted ones,
    in order) that its time policy drops: the second occurrence of a repeated local time under
    a run-once daylight-saving policy, a day before the last under `L`. The launcher refuses
    each with the policy's reason; none runs, so none is missed or supersedes another."""
    if row["trigger_type"] != "recurring" or not fires:
        return set()
    spec, timezone, policy = parse_cron(row["cron"]), row["timezone"], row.get("dst_policy")
    if mode_for(spec, policy) is None and not spec.last_day:
        return set()
    begin = fires[0] - timedelta(microseconds=1)
    kept = set(policy_fires_between(spec, timezone, policy, begin, fires[-1]))
    # Only what the launcher itself refuses: a fire it would launch is never recorded so.
    return {
        fire
        for fire in fires
        if fire not in kept and refusal(spec, timezone, policy, fire) is not None
    }


def pause_start(row: dict) -> datetime | None:
    """When the schedule's open paused or invalid window began (None: no window is open)."""
    return next((w.lower for w in row.get("quiet") or [] if w.upper is None), None)


def owed_before(
    row: dict,
    until: datetime,
    pruned_before: datetime | None = None,
    limit: int | None = MAX_FIRES_PER_SWEEP,
) -> list[datetime]:
    """The fires a registration (its state row) owed before `until`, the instant it stopped
    owing fires (an edit of its trigger or of a one-time runAt, a delete), or before its open
    pause or invalid window, whichever comes first; none before the pruned ledger's horizon.
    A one-time registration owes its runAt when that passed before then (its Job, deleted by
    the change, can no longer deliver it). Each must end in the ledger: delivered now as its
    late Job would be, the launcher records it with the reason the change gives.
    At most the first `limit` (None: all): a sweep takes the rest from where it stopped, a
    change that leaves no row to take them from asks for all."""
    paused_at = pause_start(row)
    end = min(until, paused_at) if paused_at else until
    start = _owed_from(row)
    if pruned_before is not None:
        start = max(start, pruned_before - timedelta(microseconds=1))
    if end <= start:
        return []
    fires = [fire for fire in fires_between(row, start, end) if fire < end]
    return fires if limit is None else fires[:limit]


def fires_at(row: dict, instant: datetime) -> bool:
    """Whether the trigger of the state row `row` fires at `instant` and its time policy keeps
    that fire: the instant is then owed by this trigger, whoever delivered it first."""
    second = timedelta(seconds=1)
    if instant not in fires_between(row, instant - second, instant):
        return False
    if row["trigger_type"] == "schedule":
        return True
    spec = parse_cron(row["cron"])
    return refusal(spec, row["timezone"], row.get("dst_policy"), instant) is None


def quiet_at(row: dict, instant: datetime) -> bool:
    """Whether `instant` falls in one of the schedule's paused or invalid windows (the row's
    `quiet`: ranges with `lower` and `upper`, None for unbounded, lower bound included)."""
    return any(
        (window.lower is None or window.lower <= instant)
        and (window.upper is None or instant < window.upper)
        for window in row.get("quiet") or []
    )


def paused_over_run_at(row: dict) -> bool:
    """A one-time schedule whose runAt fell in a paused or invalid window: it never fires."""
    return row["trigger_type"] == "schedule" and quiet_at(row, row["run_at"])
