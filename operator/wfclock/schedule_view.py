"""Next fires as people read them: UTC instant, local time with offset, and DST notes."""

from __future__ import annotations

from datetime import datetime

from wfclock.firetime import CronSpec, is_fire_instant, next_fire_times, utc_iso, zone


def dst_note(spec: CronSpec, timezone: str, fire: datetime) -> str | None:
    """Says when a fire was moved by a skipped hour or doubled by a repeated one."""
    local = fire.astimezone(zone(timezone))
    if not (spec.hour >> local.hour & 1 and spec.minute >> local.minute & 1):
        return "moved by a DST change: the planned wall time does not exist that day"
    twin = local.replace(fold=1 - local.fold)
    if twin.utcoffset() != local.utcoffset() and is_fire_instant(spec, timezone, twin):
        which = "first" if local.fold == 0 else "second"
        return f"doubled by a DST change: this wall time occurs twice; {which} of two fires"
    return None


def next_fires_view(spec: CronSpec, timezone: str, after: datetime, count: int) -> list[dict]:
    views = []
    for fire in next_fire_times(spec, timezone, after, count):
        local = fire.astimezone(zone(timezone))
        view = {"at": utc_iso(fire), "local": local.isoformat()}
        note = dst_note(spec, timezone, fire)
        if note:
            view["note"] = note
        views.append(view)
    return views
