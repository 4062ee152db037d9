"""Next fires as people read them: UTC instant, local time with offset, and DST notes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

from wfclock.core.dst import mode_for, next_policy_fires, policy_fires_between
from wfclock.core.fires import utc_iso
from wfclock.core.firetime import (
    CronSpec,
    day_matches,
    is_fire_instant,
    next_fire_after,
    next_fire_times,
    zone,
)


def dst_note(spec: CronSpec, timezone: str, fire: datetime) -> str | None:
    """Says when a fire was moved by a skipped hour or doubled by a repeated one."""
    local = fire.astimezone(zone(timezone))
    if not (spec.hour >> local.hour & 1 and spec.minute >> local.minute & 1):
        return "moved by a DST change: the planned wall time does not exist that day"
    twin = local.replace(fold=1 - local.fold)
    if twin.utcoffset() != local.utcoffset() and is_fire_instant(
        spec, timezone, twin.astimezone(UTC)
    ):
        which = "first" if local.fold == 0 else "second"
        return f"doubled by a DST change: this wall time occurs twice; {which} of two fires"
    return None


def skipped_before(spec: CronSpec, timezone: str, previous: datetime, fire: datetime) -> list[str]:
    """Planned wall times between two fires that the CronJob controller skips: they fall in the
    hour a DST change removes (as robfig/cron does, no fire is made up for them)."""
    tz = zone(timezone)
    skipped = []
    day = previous.astimezone(tz).date()
    while day <= fire.astimezone(tz).date():
        start = datetime.combine(day, time(0), tz)
        if (
            start.utcoffset() != (start + timedelta(days=1)).utcoffset()
            and spec.month >> day.month & 1
            and day_matches(spec, day)
        ):
            for hour in range(24):
                for minute in range(60):
                    if spec.hour >> hour & 1 and spec.minute >> minute & 1:
                        wall = datetime.combine(day, time(hour, minute), tz)
                        if wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall.replace(
                            tzinfo=None
                        ):
                            skipped.append(f"{day.isoformat()} {hour:02d}:{minute:02d}")
        day += timedelta(days=1)
    return skipped


def next_fires_view(spec: CronSpec, timezone: str, after: datetime, count: int) -> list[dict]:
    """The next fires with UTC instant, local time and offset, and a note on DST effects.

    Fires fall on whole minutes, so the answer is the same for every `after` within one minute:
    it is computed once per expression, zone and minute, however many schedules share them."""
    minute = after.astimezone(UTC).replace(second=0, microsecond=0)
    return [dict(view) for view in _next_fires_view(spec, timezone, minute, count)]


@lru_cache(maxsize=2048)
def _skipped_note(spec: CronSpec, timezone: str, previous: datetime, fire: datetime) -> list[str]:
    skipped = skipped_before(spec, timezone, previous, fire)
    if not skipped:
        return []
    return [
        f"after a skipped fire: {', '.join(skipped)} does not exist in {timezone} "
        "(clocks jump forward), so no run is made for it"
    ]


def _next_fires_view(spec: CronSpec, timezone: str, after: datetime, count: int) -> tuple:
    views = []
    previous = after
    for fire in next_fire_times(spec, timezone, after, count):
        local = fire.astimezone(zone(timezone))
        view = {"at": utc_iso(fire), "local": local.isoformat()}
        note = fire_note(spec, timezone, None, fire, previous)
        if note:
            view["note"] = note
        views.append(view)
        previous = fire
    return tuple(views)


# How many fires `next_fires_under_policy` looks at, at most, to find the ones it shows.
POLICY_SCAN_LIMIT = 400
# At most this many excluded fires are listed (status.excludedFires, maxItems in the CRD).
EXCLUDED_SHOWN = 20


def next_fires_under_policy(
    spec: CronSpec,
    timezone: str,
    after: datetime,
    count: int,
    day_refusal: Callable[[datetime], str | None],
    *,
    active_from: datetime | None = None,
    active_until: datetime | None = None,
    remaining: int | None = None,
    dst_policy: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """The next fires that will run under the schedule's calendars and bounds, and the fires
    before the last of them that will not (with the reason the launcher records).

    `day_refusal(fire)` is the calendars' verdict on a fire's local date: a refused date skips
    to the next local day. Fires before `active_from` are not looked at, none after
    `active_until` is shown, and at most `remaining` are (maxFires minus the fires launched).
    The fires are those the daylight-saving policy `dst_policy` and `L` leave."""
    tz = zone(timezone)
    limit = count if remaining is None else min(count, max(remaining, 0))
    shown: list[dict] = []
    excluded: list[dict] = []
    cursor = after
    if active_from is not None and active_from > cursor:
        cursor = active_from - timedelta(microseconds=1)
    for _ in range(POLICY_SCAN_LIMIT):
        if len(shown) >= limit:
            break
        fire = _next_fire(spec, timezone, dst_policy, cursor)
        if fire is None or (active_until is not None and fire > active_until):
            break
        local = fire.astimezone(tz)
        view = {"at": utc_iso(fire), "local": local.isoformat()}
        why = day_refusal(fire)
        if why is None:
            note = dst_note(spec, timezone, fire)
            shown.append({**view, "note": note} if note else view)
            cursor = fire
            continue
        excluded.append({**view, "reason": why})
        # The whole local day is refused: look again from its end.
        next_day = datetime.combine(local.date() + timedelta(days=1), time(0), tz)
        cursor = max(fire, next_day.astimezone(UTC) - timedelta(microseconds=1))
    return shown, excluded[:EXCLUDED_SHOWN]


def _next_fire(spec: CronSpec, timezone: str, policy: str | None, after: datetime):
    """The next fire that runs after `after` under the daylight-saving policy and `L`."""
    if mode_for(spec, policy) is None and not spec.last_day:
        return next_fire_after(spec, timezone, after)
    fires = next_policy_fires(spec, timezone, policy, after, 1)
    return fires[0] if fires else None


def policy_next_fires_view(
    spec: CronSpec, timezone: str, policy: str | None, after: datetime, count: int
) -> list[dict]:
    """`next_fires_view` under a daylight-saving policy and `L` (`wfclock.core.dst`): exactly
    the fires that will run, with a note on each one the policy moved or kept once."""
    if mode_for(spec, policy) is None and not spec.last_day:
        return next_fires_view(spec, timezone, after, count)
    minute = after.astimezone(UTC).replace(second=0, microsecond=0)
    return [dict(view) for view in _policy_view(spec, timezone, policy, minute, count)]


@lru_cache(maxsize=2048)
def _policy_view(spec: CronSpec, timezone: str, policy, after: datetime, count: int) -> tuple:
    tz = zone(timezone)
    views = []
    previous = after
    for fire in next_policy_fires(spec, timezone, policy, after, count):
        local = fire.astimezone(tz)
        view = {"at": utc_iso(fire), "local": local.isoformat()}
        note = fire_note(spec, timezone, policy, fire, previous)
        if note:
            view["note"] = note
        views.append(view)
        previous = fire
    return tuple(views)


def is_shifted(spec: CronSpec, timezone: str, fire: datetime) -> bool:
    """A fire at a wall time the cron does not name: moved by a daylight-saving gap."""
    local = fire.astimezone(zone(timezone))
    return not (spec.hour >> local.hour & 1 and spec.minute >> local.minute & 1)


def fire_note(
    spec: CronSpec, timezone: str, policy: str | None, fire: datetime, previous: datetime
) -> str | None:
    """What a daylight-saving change does to `fire` (the one after `previous`) under the policy:
    the note `status.nextFires` carries, None when it does nothing."""
    mode = mode_for(spec, policy)
    notes = []
    if mode is None and not spec.last_day:  # the CronJob's own fires
        notes.extend(n for n in [dst_note(spec, timezone, fire)] if n)
        notes.extend(_skipped_note(spec, timezone, previous, fire))
        return "; ".join(notes) or None
    local = fire.astimezone(zone(timezone))
    if is_shifted(spec, timezone, fire):
        notes.append(
            f"runs after a DST gap (dstPolicy {policy}): the planned wall time does not "
            f"exist in {timezone} that day, so it runs at the first instant after the gap"
        )
    elif local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        if mode is not None and mode[0] == "Once":
            notes.append(
                f"this wall time occurs twice (clocks go back); dstPolicy {policy} runs it "
                "at the first occurrence only"
            )
        else:
            notes.extend(n for n in [dst_note(spec, timezone, fire)] if n)
    if mode is None or mode[1] == "Skip":
        notes.extend(_skipped_note(spec, timezone, previous, fire))
    return "; ".join(notes) or None


def planned_fires_between(
    spec: CronSpec,
    timezone: str,
    begin: datetime,
    end: datetime,
    day_refusal: Callable[[datetime], str | None],
    *,
    active_from: datetime | None = None,
    active_until: datetime | None = None,
    remaining: int | None = None,
    dst_policy: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Every fire in (begin, end] that the CronJob and the policy make, as the launcher decides
    it: `{"at", "local", "note"?, "shifted"?}` for a fire that runs, with `"refused": reason`
    for one it refuses (the reason it records: `before-active-from`, `calendar:<name>:<why>`).

    The window form of `next_fires_under_policy` (the console's timeline): the same fires
    (`dst.policy_fires_between`), calendars and bounds; none after `active_until` or after
    the `remaining` fires that maxFires leaves is listed; at most `limit` are listed."""
    tz = zone(timezone)
    if active_until is not None:
        end = min(end, active_until)
    if begin >= end or (remaining is not None and remaining <= 0):
        return []
    listed: list[dict] = []
    runs = 0
    previous = begin
    for fire in _fires_by_day(spec, timezone, dst_policy, begin, end):
        if limit is not None and len(listed) >= limit:
            break
        view = {"at": utc_iso(fire), "local": fire.astimezone(tz).isoformat()}
        why = "before-active-from" if active_from is not None and fire < active_from else None
        why = why or day_refusal(fire)
        if why is not None:
            listed.append({**view, "refused": why})
            continue
        note = fire_note(spec, timezone, dst_policy, fire, previous)
        if note:
            view["note"] = note
        if is_shifted(spec, timezone, fire):
            view["shifted"] = True
        listed.append(view)
        previous = fire
        runs += 1
        if remaining is not None and runs >= remaining:
            break
    return listed


def _fires_by_day(
    spec: CronSpec, timezone: str, policy: str | None, begin: datetime, end: datetime
):
    """`policy_fires_between` a day at a time, so a caller that needs only the first fires of a
    frequent schedule does not enumerate the whole window."""
    while begin < end:
        stop = min(begin + timedelta(days=1), end)
        yield from policy_fires_between(spec, timezone, policy, begin, stop)
        begin = stop
