"""An independent model of the daylight-saving policies, for tests: it walks the wall clock minute
by minute with zoneinfo and knows nothing of robfig/cron or `wfclock.core.dst`.

Walking forward in UTC minutes, the local wall clock either advances by a minute, jumps forward
(a gap: the wall minutes jumped over do not exist) or jumps back (an overlap: the wall minutes
until the highest one seen so far happen a second time). A policy decides per matching wall
minute: a repeated one fires once (the first time) or each time; the missing ones of one gap are
skipped or fire once at the first instant after the gap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

POLICY_MODES = {
    "Kubernetes": ("Each", "Skip"),
    "RunOnceSkipMissing": ("Once", "Skip"),
    "RunOnceShiftMissing": ("Once", "Shift"),
    "RunEachShiftMissing": ("Each", "Shift"),
}
POLICIES = ("Auto", *POLICY_MODES)
MINUTE = timedelta(minutes=1)
# How far before `begin` the walk starts, so it has seen a repeated wall time the first time.
LEAD = timedelta(hours=12)


def _values(field: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(x) for x in base.split("-"))
        else:
            first = last = int(base)
            if step:
                last = high
        values.update(range(first, last + 1, int(step or 1)))
    return values


class Cron:
    """The subset the tests use: minute and hour fields; day fields `*` or numbers."""

    def __init__(self, expression: str):
        minute, hour, dom, month, dow = expression.split()
        self.expression = expression
        self.minutes, self.hours = _values(minute, 0, 59), _values(hour, 0, 23)
        self.doms, self.months = _values(dom, 1, 31), _values(month, 1, 12)
        self.dows = _values(dow, 0, 6)
        self.fixed = not minute.startswith("*") and not hour.startswith("*")

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.day in self.doms
            and wall.month in self.months
            and (wall.weekday() + 1) % 7 in self.dows
        )


def mode(cron: Cron, policy: str) -> tuple[str, str]:
    if policy == "Auto":
        return ("Once", "Shift") if cron.fixed else ("Each", "Skip")
    return POLICY_MODES[policy]


def walk_fires(
    expression: str, timezone: str, policy: str, begin: datetime, end: datetime
) -> list[datetime]:
    """The policy's fires in (begin, end], by walking UTC minutes from `LEAD` before `begin`."""
    cron, tz = Cron(expression), ZoneInfo(timezone)
    repeated, missing = mode(cron, policy)
    fires: list[datetime] = []
    u = begin.astimezone(UTC).replace(second=0, microsecond=0) - LEAD
    previous = u.astimezone(tz).replace(tzinfo=None)
    highest = previous
    while u < end:
        u += MINUTE
        wall = u.astimezone(tz).replace(tzinfo=None)
        due = []
        if wall - previous > MINUTE and missing == "Shift":
            skipped = previous + MINUTE
            while skipped < wall:
                if skipped > highest and cron.matches(skipped):
                    due.append(u)
                    break
                skipped += MINUTE
        if cron.matches(wall) and (wall > highest or repeated == "Each"):
            due.append(u)
        if begin < u <= end:
            fires.extend(f for f in due if f not in fires)
        previous, highest = wall, max(highest, wall)
    return fires


def transitions(timezone: str, begin: datetime, end: datetime) -> list[datetime]:
    """The instants (to the minute) where the zone's UTC offset changes in [begin, end); at most
    one per day (true of every zone the tests use)."""
    tz = ZoneInfo(timezone)

    def offset(instant: datetime) -> timedelta:
        return instant.astimezone(tz).utcoffset()

    found = []
    day = begin.astimezone(UTC)
    while day < end:
        following = day + timedelta(days=1)
        if offset(day) != offset(following):
            low, high = day, following  # the change is in (low, high]
            while high - low > MINUTE:
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if offset(middle) == offset(low):
                    low = middle
                else:
                    high = middle
            found.append(high)
        day = following
    return found
