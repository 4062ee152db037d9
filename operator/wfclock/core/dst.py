"""Time policies of a recurring schedule: the daylight-saving policy and `L`, realised on top of
the CronJob.

The CronJob controller fires what robfig/cron computes (`firetime`: "raw" fires): it skips a
local time that does not exist (spring-forward) and fires twice at one that happens twice
(fall-back). A schedule's `dstPolicy` chooses instead:

- `Kubernetes`: exactly the raw fires.
- `RunOnceSkipMissing`, `RunOnceShiftMissing`, `RunEachShiftMissing`: a repeated local time runs
  once (at its first occurrence) or at each; a local time that does not exist is skipped or runs
  at the first instant after the gap.
- `Auto` (the default), the Debian/Vixie cron convention: a fixed-time job (minute and hour both
  written without `*`) is `RunOnceShiftMissing`; a job with a wildcard or stepped minute or hour
  follows elapsed time (`Kubernetes`).

The policy's fires are the raw fires, except on the local days around an offset change, where
they are enumerated from the wall clock. The launcher refuses a raw fire the policy drops
(`refusal`); the operator launches the fires the controller never creates (`shifted_fires`).
A fire that runs after a gap is keyed by the instant it runs at, the end of the gap: every
missing wall time of one gap runs once there, and it is the same fire as a raw fire at that
instant, if the schedule has one.

`L` (last day of the month): the CronJob fires on days 28-31 and the launcher refuses every day
that is not the last of its month.

Pure functions: no clock, no I/O. Imported on the launcher's path: standard library only.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

from wfclock.core.firetime import (
    CronSpec,
    _offset,
    _offset_changes,
    day_matches,
    next_fire_after,
    zone,
)

AUTO, KUBERNETES = "Auto", "Kubernetes"
# policy -> (a repeated local time runs: Once | Each, a missing one: Skip | Shift)
_MODES = {
    "RunOnceSkipMissing": ("Once", "Skip"),
    "RunOnceShiftMissing": ("Once", "Shift"),
    "RunEachShiftMissing": ("Each", "Shift"),
    KUBERNETES: ("Each", "Skip"),
}
DST_POLICIES = (
    AUTO,
    KUBERNETES,
    "RunOnceSkipMissing",
    "RunOnceShiftMissing",
    "RunEachShiftMissing",
)
# The local days either side of an offset change whose fires are enumerated from the wall clock.
_AROUND = timedelta(days=2)


def is_fixed_time(spec: CronSpec) -> bool:
    """Vixie cron's fixed-time job: neither the minute nor the hour field starts with `*`."""
    minute, hour = spec.expression.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def mode_for(spec: CronSpec, policy: str | None) -> tuple[str, str] | None:
    """(repeated, missing) for a policy, or None when the raw fires are the policy's fires
    (`Kubernetes`, `Auto` for a wildcard job, or no policy: a registration made before there
    were policies)."""
    if policy is None or policy == KUBERNETES:
        return None
    if policy == AUTO:
        return ("Once", "Shift") if is_fixed_time(spec) else None
    return _MODES[policy]


def is_last_day(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def _raw_between(spec: CronSpec, timezone: str, begin: datetime, end: datetime) -> list[datetime]:
    fires, cursor = [], begin
    while (fire := next_fire_after(spec, timezone, cursor)) is not None and fire <= end:
        if fire <= cursor:  # robfig/cron can answer an earlier instant (Pacific/Chatham)
            cursor += timedelta(minutes=1)
            continue
        fires.append(fire)
        cursor = fire
    return fires


def _changed_days(timezone: str, begin: datetime, end: datetime) -> list[date]:
    """The local days within two days of an offset change near (begin, end]."""
    tz = zone(timezone)
    days: set[date] = set()
    for change in _offset_changes(tz, begin - _AROUND, end + _AROUND):
        first = (change - timedelta(seconds=1)).astimezone(tz).date() - timedelta(days=1)
        last = change.astimezone(tz).date() + timedelta(days=1)
        while first <= last:
            days.add(first)
            first += timedelta(days=1)
    return sorted(days)


def _gap_end(tz, before: int, after: int) -> int:
    """The first second of the offset in force at `after`, between `before` and `after`."""
    target = _offset(after, tz)
    while after - before > 1:
        middle = (before + after) // 2
        if _offset(middle, tz) == target:
            after = middle
        else:
            before = middle
    return after


def wall_fires(spec: CronSpec, timezone: str, day: date, mode: tuple[str, str]) -> list[datetime]:
    """The fires a policy makes for the wall times of the local `day`, from the wall clock."""
    if not (spec.month >> day.month & 1 and day_matches(spec, day)):
        return []
    if spec.last_day and not is_last_day(day):
        return []
    repeated, missing = mode
    tz = zone(timezone)
    fires = []
    for hour in range(24):
        if not spec.hour >> hour & 1:
            continue
        for minute in range(60):
            if not spec.minute >> minute & 1:
                continue
            wall = datetime.combine(day, time(hour, minute))
            first = int(wall.replace(tzinfo=tz, fold=0).timestamp())
            second = int(wall.replace(tzinfo=tz, fold=1).timestamp())
            if first == second:
                fires.append(first)
            elif first < second:  # happens twice
                fires.extend([first, second] if repeated == "Each" else [first])
            elif missing == "Shift":  # in a gap: zoneinfo reads it before and after the change
                fires.append(_gap_end(tz, second, first))
    return [datetime.fromtimestamp(f, UTC) for f in sorted(set(fires))]


def policy_fires_between(
    spec: CronSpec, timezone: str, policy: str | None, begin: datetime, end: datetime
) -> list[datetime]:
    """The fires in (begin, end] under the policy and `L`: what really runs."""
    fires = _raw_between(spec, timezone, begin, end)
    mode = mode_for(spec, policy)
    tz = zone(timezone)
    if mode is not None:
        days = _changed_days(timezone, begin, end)
        if days:
            kept = set(days)
            fires = [f for f in fires if f.astimezone(tz).date() not in kept]
            for day in days:
                fires.extend(f for f in wall_fires(spec, timezone, day, mode) if begin < f <= end)
            fires = sorted(set(fires))
    if spec.last_day:
        enumerated = set(_changed_days(timezone, begin, end)) if mode is not None else set()
        fires = [
            f
            for f in fires
            if f.astimezone(tz).date() in enumerated or is_last_day(f.astimezone(tz).date())
        ]
    return fires


def next_policy_fires(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime, count: int
) -> list[datetime]:
    """The next `count` fires strictly after `after` under the policy and `L`."""
    fires: list[datetime] = []
    for days in (2, 40, 400, 1830):  # short windows first: most schedules fire often
        fires = policy_fires_between(spec, timezone, policy, after, after + timedelta(days=days))
        if len(fires) >= count:
            break
    return fires[:count]


def shifted_fires_between(
    spec: CronSpec, timezone: str, policy: str | None, begin: datetime, end: datetime
) -> list[datetime]:
    """Fires in (begin, end] the policy makes and the CronJob controller does not: the operator
    launches them. Only the days around an offset change can hold one."""
    mode = mode_for(spec, policy)
    if mode is None:
        return []
    tz = zone(timezone)
    shifted = []
    for day in _changed_days(timezone, begin, end):
        start = datetime.combine(day, time(0), tz) - timedelta(hours=1)
        stop = datetime.combine(day + timedelta(days=1), time(0), tz) + timedelta(hours=1)
        raw = set(_raw_between(spec, timezone, start - timedelta(days=1), stop + timedelta(days=1)))
        shifted.extend(
            f for f in wall_fires(spec, timezone, day, mode) if begin < f <= end and f not in raw
        )
    return sorted(set(shifted))


def next_shifted_fire(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime
) -> datetime | None:
    """The first shifted fire after `after`, within about 13 months (None: none that soon).

    Computed once per expression, zone, policy and minute, however many schedules share them
    (a registration and a restart ask it of every schedule): the first fire after the minute
    `after` falls in is the first after `after` too, unless it lies within that minute."""
    if mode_for(spec, policy) is None:
        return None
    return _per_minute(_next_shifted_fire, spec, timezone, policy, after)


def _per_minute(search, spec: CronSpec, timezone: str, policy: str | None, after: datetime):
    """A cached search's first fire strictly after `after`, from its answer for the minute
    `after` falls in: the same, unless that fire lies within the minute (at no whole minute,
    as after an offset change of seconds), which is then searched for from `after` itself.
    A search's horizon counts from the minute: up to 59 seconds earlier than from `after`."""
    minute = after.astimezone(UTC).replace(second=0, microsecond=0)
    fire = search(spec, timezone, policy, minute)
    if fire is not None and fire <= after:
        return search.__wrapped__(spec, timezone, policy, after)
    return fire


@lru_cache(maxsize=2048)
def _next_shifted_fire(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime
) -> datetime | None:
    fires = shifted_fires_between(spec, timezone, policy, after, after + timedelta(days=400))
    return fires[0] if fires else None


def is_shifted_fire(spec: CronSpec, timezone: str, policy: str | None, instant: datetime) -> bool:
    """Whether `instant` is a fire the policy makes after a gap, which the CronJob controller
    never creates (the operator launches it, or the accounting sweep when the operator could
    not): a fire of the schedule all the same."""
    second = timedelta(seconds=1)
    return instant in shifted_fires_between(spec, timezone, policy, instant - second, instant)


def refusal(spec: CronSpec, timezone: str, policy: str | None, instant: datetime) -> str | None:
    """Why the launcher refuses a fire at `instant` (a reason for the ledger), or None.

    Only a raw fire the policy drops is refused: an instant that is no raw fire either (another
    process's time-zone data, a shifted fire) is not this check's to refuse."""
    if mode_for(spec, policy) is None and not spec.last_day:
        return None
    second = timedelta(seconds=1)
    if instant in policy_fires_between(spec, timezone, policy, instant - second, instant):
        return None
    if next_fire_after(spec, timezone, instant - second) != instant:
        return None
    local = instant.astimezone(zone(timezone))
    if spec.last_day and not is_last_day(local.date()):
        return f"not-last-day-of-month: {local.date().isoformat()} is not the last day of its month"
    twin = local.replace(fold=1 - local.fold)
    if local.fold == 1 and twin.utcoffset() != local.utcoffset():
        return (
            f"dst-policy:{policy}: {local:%Y-%m-%d %H:%M} happens twice in {timezone} "
            "(clocks go back); this schedule runs at its first occurrence only"
        )
    return (
        f"dst-policy:{policy}: {local:%Y-%m-%d %H:%M} is not a fire of {spec.expression!r} "
        f"in {timezone} under this policy"
    )


def next_fire(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime
) -> datetime | None:
    """The first fire strictly after `after` under the policy and `L` (None beyond 5 years).
    Under a policy or `L`, computed once per expression, zone, policy and minute."""
    if mode_for(spec, policy) is None and not spec.last_day:
        return next_fire_after(spec, timezone, after)
    return _per_minute(_next_policy_fire, spec, timezone, policy, after)


@lru_cache(maxsize=2048)
def _next_policy_fire(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime
) -> datetime | None:
    fires = next_policy_fires(spec, timezone, policy, after, 1)
    return fires[0] if fires else None
