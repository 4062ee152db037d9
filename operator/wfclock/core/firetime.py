"""Cron parsing and next-fire maths, exactly as Kubernetes' CronJob controller computes them.

The CronJob controller parses `spec.schedule` with github.com/robfig/cron/v3 and asks its
`SpecSchedule.Next` for fire instants. Our next fires, minimum-interval checks and the launcher's
"was this instant really produced by the schedule?" check must agree with what actually fires,
including in the skipped and the repeated hour of a daylight-saving change, so this module ports
that algorithm (and the normalisation Go's `time.Date` applies to a wall time that does not exist
or exists twice) rather than using a library with different DST rules. The property test in
`tests/parity/test_firetime_parity.py` compares it with the Go original.

Pure functions only: no clock, no I/O beyond reading zone data from the pinned `tzdata` package.
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice

# Zone data comes from the pinned `tzdata` package, never from the host, so results do not depend
# on which machine computes them.
zoneinfo.reset_tzpath(to=[])

MAX_CRON_LENGTH = 128
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_ALLOWED_CHARS = set("0123456789*/,-")
_STAR_BIT = 1 << 63

# The forms Kubernetes users write, normalised to the numeric 5 fields that are registered on the
# CronJob and shown: macros, month and weekday names (any case), and `L` (the last day of the
# month) in the day-of-month field, registered as `28-31` and narrowed by the launcher.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
DAY_NAMES = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
LAST_DAY = "L"
LAST_DAY_RANGE = "28-31"
_NAMES = {3: MONTH_NAMES, 4: DAY_NAMES}


class CronError(ValueError):
    """A cron expression that wfclock does not accept; the message says which part and why."""


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field expression: one bit set per allowed value, as robfig/cron stores it."""

    expression: str
    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    # `L` in day-of-month: the CronJob fires on days 28-31 and the launcher keeps the last one.
    last_day: bool = False

    @property
    def registered(self) -> str:
        """The expression registered on the CronJob (`L` widened to `28-31`)."""
        if not self.last_day:
            return self.expression
        fields = self.expression.split()
        fields[2] = LAST_DAY_RANGE
        return " ".join(fields)

    @property
    def dom_restricted(self) -> bool:
        return not self.dom & _STAR_BIT

    @property
    def dow_restricted(self) -> bool:
        return not self.dow & _STAR_BIT


@lru_cache(maxsize=1024)
def parse_cron(expression: str) -> CronSpec:
    """Parses a 5-field cron expression, checking every range: digits and `* / , -`, month and
    weekday names, the macros (`@daily` ...) and `L` alone in day-of-month. `expression` of the
    result is the normalised numeric form (names and macros replaced, `L` kept)."""
    text = expression.strip()
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise CronError(
                f"macro {text!r} is not accepted; accepted: {', '.join(MACROS)} "
                "(@every and @reboot are not supported)"
            )
        text = macro
    if not text:
        raise CronError("is empty; expected 5 fields: minute hour day-of-month month day-of-week")
    if len(text) > MAX_CRON_LENGTH:
        raise CronError(f"is {len(text)} characters long; at most {MAX_CRON_LENGTH} are accepted")
    fields = text.split()
    if len(fields) != 5:
        hint = " (seconds and 6/7-field forms are not supported)" if len(fields) > 5 else ""
        raise CronError(
            f"has {len(fields)} fields; expected exactly 5: "
            f"minute hour day-of-month month day-of-week{hint}"
        )
    fields = [_numbered(field, i) for i, field in enumerate(fields)]
    last_day = fields[2].upper() == LAST_DAY
    if last_day:
        fields[2] = LAST_DAY
    bits = [
        _parse_field(LAST_DAY_RANGE if last_day and i == 2 else field, name, bounds)
        for i, (field, name, bounds) in enumerate(
            zip(fields, FIELD_NAMES, FIELD_BOUNDS, strict=True)
        )
    ]
    spec = CronSpec(" ".join(fields), *bits, last_day=last_day)
    if spec.dom_restricted and spec.dow_restricted:
        raise CronError(
            "restricts both day-of-month and day-of-week; restrict at most one of them "
            "and leave the other as '*'"
        )
    return spec


def _numbered(field: str, index: int) -> str:
    """The field with month or weekday names (any case) replaced by their numbers."""
    names = _NAMES.get(index)
    if names is None or not any(c.isalpha() for c in field):
        return field

    def number(match: re.Match) -> str:
        word = match.group(0).upper()
        if word not in names:
            accepted = "JAN-DEC" if index == 3 else "SUN-SAT"
            raise CronError(
                f"{FIELD_NAMES[index]} field has {match.group(0)!r}, which is not a name; "
                f"accepted names: {accepted} (any case)"
            )
        return str(names[word])

    return re.sub(r"[A-Za-z]+", number, field)


def _parse_field(field: str, name: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    bad = sorted(set(field) - _ALLOWED_CHARS)
    if bad:
        where = "; 'L' is accepted alone in day-of-month" if name == "day-of-month" else ""
        names = {"month": "JAN-DEC", "day-of-week": "SUN-SAT"}.get(name)
        accepted = f", or the names {names}" if names else ""
        raise CronError(
            f"{name} field {field!r} contains {''.join(bad)!r}; only digits and '* / , -'"
            f"{accepted} are accepted (no '?', '#' or 'W'{where})"
        )
    bits = 0
    for part in field.split(","):
        bits |= _parse_range(part, name, low, high)
    return bits


def _parse_range(part: str, name: str, low: int, high: int) -> int:
    def number(text: str) -> int:
        if not text.isdigit():
            raise CronError(f"{name} field has {part!r}, which is not a number, range or step")
        return int(text)

    range_text, _, step_text = part.partition("/")
    if "/" in step_text:
        raise CronError(f"{name} field has {part!r} with more than one '/'")
    step = number(step_text) if step_text else 1
    if step_text and step == 0:
        raise CronError(f"{name} field has step 0 in {part!r}; a step must be at least 1")
    extra = 0
    if range_text == "*":
        start, end = low, high
        extra = _STAR_BIT if step == 1 else 0
    else:
        first, dash, last = range_text.partition("-")
        start = number(first)
        end = number(last) if dash else (high if step_text else start)
        if start < low or end > high:
            raise CronError(f"{name} field value in {part!r} is out of range {low}-{high}")
        if start > end:
            raise CronError(f"{name} field range {part!r} starts after it ends")
    bits = 0
    for value in range(start, end + 1, step):
        bits |= 1 << value
    return bits | extra


@lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; raises CronError naming it when it is not a real zone."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise CronError(f"{name!r} is not an IANA time zone name such as 'Europe/Berlin'")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"{name!r} is not a known IANA time zone; use a name such as 'America/New_York'"
        ) from None


# --- Go's time arithmetic, on integer Unix seconds -------------------------------------------


def _offset(unix: int, tz: zoneinfo.ZoneInfo) -> int:
    return int(datetime.fromtimestamp(unix, tz).utcoffset().total_seconds())


def _go_date(year: int, month: int, day: int, hour: int, minute: int, tz) -> int:
    """Go's `time.Date`: normalises overflowing fields, resolves gaps and folds like Go does."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    days = (datetime(year, month, 1) - datetime(1970, 1, 1)).days + day - 1
    wall = days * 86400 + hour * 3600 + minute * 60
    offset = _offset(wall, tz)
    utc = wall - offset
    # Go keeps the offset of the zone period that contains `wall` read as UTC when `utc` falls in
    # that same period, otherwise it takes the offset in force at `utc`.
    if _offset(utc, tz) != offset:
        offset = _offset(utc, tz)
    return wall - offset


def _wall(unix: int, tz) -> datetime:
    """The local wall clock at `unix` (the hot path of the search: no wrapper object)."""
    return datetime.fromtimestamp(unix, tz)


def day_matches(spec: CronSpec, day) -> bool:
    """Whether the day-of-month and day-of-week fields accept `day` (a date or datetime); when
    both are restricted, either one suffices (cron's rule)."""
    dom_match = bool(1 << day.day & spec.dom)
    dow_match = bool(1 << ((day.weekday() + 1) % 7) & spec.dow)  # cron counts Sunday as 0
    if spec.dom & _STAR_BIT or spec.dow & _STAR_BIT:
        return dom_match and dow_match
    return dom_match or dow_match


def _next_unix(spec: CronSpec, t: int, tz) -> int | None:
    """robfig/cron/v3 `SpecSchedule.Next` on Unix seconds (seconds field is always 0)."""
    t += 1
    added = False
    year_limit = _wall(t, tz).year + 5
    while True:  # the WRAP label
        w = _wall(t, tz)
        if w.year > year_limit:
            return None
        wrapped = False
        while not (1 << w.month & spec.month):
            if not added:
                added = True
                t = _go_date(w.year, w.month, 1, 0, 0, tz)
                w = _wall(t, tz)
            t = _go_date(w.year, w.month + 1, w.day, w.hour, w.minute, tz) + w.second
            w = _wall(t, tz)
            if w.month == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not day_matches(spec, w):
            if not added:
                added = True
                t = _go_date(w.year, w.month, w.day, 0, 0, tz)
                w = _wall(t, tz)
            t = _go_date(w.year, w.month, w.day + 1, w.hour, w.minute, tz) + w.second
            w = _wall(t, tz)
            if w.hour != 0:
                t += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
                w = _wall(t, tz)
            if w.day == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << w.hour & spec.hour):
            if not added:
                added = True
                t = _go_date(w.year, w.month, w.day, w.hour, 0, tz)
            t += 3600
            w = _wall(t, tz)
            if w.hour == 0:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << w.minute & spec.minute):
            if not added:
                added = True
                t -= t % 60
            t += 60
            w = _wall(t, tz)
            if w.minute == 0:
                wrapped = True
                break
        if wrapped:
            continue
        while w.second != 0:
            if not added:
                added = True
            t += 1
            w = _wall(t, tz)
            if w.second == 0:
                wrapped = True
                break
        if wrapped:
            continue
        return t


def next_fire_after(spec: CronSpec, timezone: str, after: datetime) -> datetime | None:
    """The first fire strictly after `after` (aware), as a UTC instant; None beyond 5 years."""
    unix = _next_unix(spec, calendar.timegm(after.astimezone(UTC).timetuple()), zone(timezone))
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def fire_times_after(spec: CronSpec, timezone: str, after: datetime) -> Iterator[datetime]:
    """The fires strictly after `after`, as UTC instants, one at a time (each one computed only
    when it is asked for); they end beyond 5 years without a fire."""
    current = after
    while True:
        fire = next_fire_after(spec, timezone, current)
        if fire is None:
            return
        if fire <= current:
            # robfig/cron's arithmetic can answer an instant at or before `after` around some
            # offset changes (Pacific/Chatham's fall-back at 03:45, `48 3 * * *` in April
            # 2015): step past it a minute at a time rather than loop on it forever.
            current += timedelta(minutes=1)
            continue
        yield fire
        current = fire


def next_fire_times(spec: CronSpec, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fires strictly after `after`, as UTC instants."""
    return list(islice(fire_times_after(spec, timezone, after), count))


def is_fire_instant(spec: CronSpec, timezone: str, instant: datetime) -> bool:
    """True when the schedule really fires at `instant` (what the launcher checks on every fire)."""
    return next_fire_after(spec, timezone, instant - timedelta(seconds=1)) == instant


def minimum_gap(spec: CronSpec, timezone: str, around: datetime) -> timedelta:
    """The smallest gap between two consecutive fires the expression can produce (see below)."""
    return _minimum_gap(spec, timezone, around.astimezone(UTC).date().replace(day=1))


@lru_cache(maxsize=4096)
def _minimum_gap(spec: CronSpec, timezone: str, month) -> timedelta:
    """The smallest gap between two consecutive fires the expression can produce.

    Computed from the expression, not its text: the wall-clock minutes of a day that match, the
    step from the last fire of a day to the first of the next when consecutive days can both
    match, and the real gaps between fires within three hours of every daylight-saving change
    in the year from `around`.
    """
    minutes = sorted(
        h * 60 + m
        for h in range(24)
        if spec.hour >> h & 1
        for m in range(60)
        if spec.minute >> m & 1
    )
    gaps = [b - a for a, b in zip(minutes, minutes[1:], strict=False)]
    around = datetime(month.year, month.month, 1, tzinfo=UTC)
    if _consecutive_days_match(spec, around.year):
        gaps.append(minutes[0] + 1440 - minutes[-1])
    best = timedelta(minutes=min(gaps)) if gaps else timedelta(days=1)
    tz = zone(timezone)
    for change in _offset_changes(tz, around - timedelta(days=1), around + timedelta(days=366)):
        # A change moves wall times by at most an hour: only fires near it can come closer.
        previous, limit = None, change + timedelta(hours=3)
        fire = next_fire_after(spec, timezone, change - timedelta(hours=3))
        while fire is not None and fire <= limit:
            if previous is not None:
                best = min(best, fire - previous)
            previous, fire = fire, next_fire_after(spec, timezone, fire)
    return best


def _consecutive_days_match(spec: CronSpec, year: int) -> bool:
    """Whether two calendar days in a row can both match (checked over a leap-year cycle)."""
    day = datetime(year, 1, 1)
    previous = False
    for _ in range(366 * 4 + 1):
        matches = bool(1 << day.month & spec.month) and day_matches(spec, day)
        if matches and previous:
            return True
        previous = matches
        day += timedelta(days=1)
    return False


def _offset_changes(tz, start: datetime, end: datetime) -> list[datetime]:
    """Instants (to the minute) where the zone's UTC offset changes between `start` and `end`."""
    changes = []
    day = int(start.timestamp()) // 3600 * 3600
    last = _offset(day, tz)
    while day < end.timestamp():
        following = day + 86400
        if _offset(following, tz) != last:
            low, high = day, following  # the change lies in (low, high]: bisect to the minute
            while high - low > 60:
                middle = (low + high) // 2
                if _offset(middle, tz) == last:
                    low = middle
                else:
                    high = middle
            changes.append(datetime.fromtimestamp(high, UTC))
            last = _offset(following, tz)
        day = following
    return changes
