"""What the console's pages show, as plain dicts built from Kubernetes objects and ledger rows.
Pure: no I/O, the time passed in, so every page's content is unit-tested without a browser."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cron_descriptor import Options, get_description

from wfclock.core.fires import parse_instant, utc_iso
from wfclock.core.firetime import CronError, next_fire_times, parse_cron, zone
from wfclock.core.model import trigger_label
from wfclock.core.nextfires import dst_note

TIMELINE_DAYS = 7
# A schedule firing every minute makes 10,080 fires in 7 days; beyond this many the timeline
# shows the first ones and says how many more there are.
TIMELINE_FIRES_PER_SCHEDULE = 2000
RECENT_FIRES = 20
BUSIEST_LISTED = 10


@lru_cache(maxsize=1024)
def cron_in_words(expression: str) -> str:
    """`15 9 * * 1-5` -> "At 09:15, Monday through Friday" (24-hour clock, as the zone shows)."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        return get_description(expression, options)
    except Exception:  # noqa: BLE001 - a description is a help, never a reason for an error page
        return "(no description)"


def countdown(seconds: float) -> str:
    """ "in 2 d 3 h", "in 5 min", "in 40 s", "now" or "3 min ago": coarse, as people read it."""
    ahead = seconds >= 0
    left = int(abs(seconds))
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        text = f"{days} d {hours} h" if hours else f"{days} d"
    elif hours:
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    elif minutes:
        text = f"{minutes} min"
    elif secs:
        text = f"{secs} s"
    else:
        return "now"
    return f"in {text}" if ahead else f"{text} ago"


def _instant(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    try:
        return parse_instant(str(value))
    except ValueError:
        return None


def in_zone(instant: datetime | None, timezone: str) -> str:
    """`2026-11-26 10:15 CET (+01:00)`: the wall time with its zone shown explicitly."""
    if instant is None:
        return "-"
    local = instant.astimezone(zone(timezone))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({offset[:3]}:{offset[3:]})"


def pause_reason(obj: dict) -> str:
    """The reason a schedule is paused: the status's (issue 15's operator), else the spec's,
    else the annotation the console writes beside it (kept where the CRD prunes the field)."""
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if not spec.get("paused"):  # resumed: the status may still show the last pause's reason
        return ""
    return (
        status.get("pauseReason")
        or spec.get("pauseReason")
        or annotations.get("wfclock.dev/pause-reason")
        or ""
    )


def schedule_row(obj: dict, ledger: dict | None, now: datetime) -> dict:
    """One line of the schedules list (and the head of a schedule's page)."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    trigger = spec.get("trigger") or {}
    kind = trigger.get("type", "?")
    timezone = trigger.get("timezone") or "UTC"
    try:
        zone(timezone)
    except Exception:  # noqa: BLE001 - an invalid schedule is still listed, in UTC
        timezone = "UTC"
    next_fire = _instant(status.get("nextFireAt"))
    if next_fire is None and status.get("nextFires"):
        next_fire = _instant(status["nextFires"][0].get("at"))
    last_fire = _instant(status.get("lastFireAt")) or _instant((ledger or {}).get("last_fire_at"))
    outcome = status.get("lastResult") or (ledger or {}).get("last_run_status") or ""
    last_success = _instant(status.get("lastSuccessfulFireAt"))  # issue 15's operator writes it
    expression = trigger.get("cron") or trigger.get("runAt") or ""
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "tenant": spec.get("tenant", ""),
        "type": kind,
        "type_label": {"recurring": "Recurring", "schedule": "One-time"}.get(kind, kind),
        "expression": expression,
        "words": cron_in_words(trigger["cron"]) if trigger.get("cron") else "once",
        "timezone": timezone,
        "next_fire_at": utc_iso(next_fire) if next_fire else "",
        "next_fire_zone": in_zone(next_fire, timezone),
        "countdown": countdown((next_fire - now).total_seconds()) if next_fire else "",
        "last_fire_at": utc_iso(last_fire) if last_fire else "",
        "last_fire_zone": in_zone(last_fire, timezone),
        "last_outcome": outcome,
        "last_success_at": utc_iso(last_success) if last_success else "",
        "last_success_zone": in_zone(last_success, timezone),
        "phase": status.get("phase") or "Pending",
        "paused": bool(spec.get("paused")),
        "pause_reason": pause_reason(obj),
        "run_now_requested": ((meta.get("annotations") or {}).get("wfclock.dev/run-now") or ""),
    }


def filter_rows(rows: list[dict], **wanted: str) -> list[dict]:
    """Rows whose fields equal every non-empty filter (namespace, tenant, type, phase)."""
    return [r for r in rows if all(not v or r.get(k) == v for k, v in wanted.items())]


def choices(rows: list[dict], field: str) -> list[str]:
    return sorted({r[field] for r in rows if r.get(field)})


def recent_fires(obj: dict, ledger_fires: list[dict]) -> list[dict]:
    """Recent fires, newest first: the status's `recentFires` where the operator writes it,
    otherwise the ledger's rows (scheduled, started, outcome, reason, run)."""
    from_status = (obj.get("status") or {}).get("recentFires")
    if from_status:
        return [
            {
                "scheduled_for": f.get("scheduledFor") or f.get("at") or "",
                "started_at": f.get("startedAt") or f.get("firedAt") or "",
                "outcome": f.get("outcome", ""),
                "reason": f.get("reason") or "",
                "run_id": f.get("runId") or "",
            }
            for f in from_status
        ][:RECENT_FIRES]
    rows = sorted(ledger_fires, key=lambda f: f["scheduled_for"], reverse=True)[:RECENT_FIRES]
    return [
        {
            "scheduled_for": utc_iso(f["scheduled_for"]),
            "started_at": utc_iso(f["first_delivered_at"]) if f.get("first_delivered_at") else "",
            "outcome": f["outcome"],
            "reason": f.get("reason") or "",
            "run_id": str(f["run_id"]) if f.get("run_id") else "",
        }
        for f in rows
    ]


def next_fires(obj: dict, now: datetime, count: int = 10) -> list[dict]:
    """The status's next fires (with their DST notes); computed from the spec if it has none."""
    listed = (obj.get("status") or {}).get("nextFires")
    if listed:
        return [dict(f) for f in listed]
    return [
        {"at": utc_iso(f.at), "local": f.local.isoformat(), **({"note": f.note} if f.note else {})}
        for f in _planned(obj, now, now + timedelta(days=366), count)
    ]


class _Fire:
    __slots__ = ("at", "local", "note")

    def __init__(self, at: datetime, local: datetime, note: str | None):
        self.at, self.local, self.note = at, local, note


def _planned(obj: dict, start: datetime, end: datetime, limit: int) -> list[_Fire]:
    spec = obj.get("spec") or {}
    if spec.get("paused"):
        return []
    trigger = spec.get("trigger") or {}
    timezone = trigger.get("timezone") or "UTC"
    try:
        tz = zone(timezone)
        if trigger.get("type") == "recurring":
            cron = parse_cron(trigger["cron"])
            return [
                _Fire(f, f.astimezone(tz), dst_note(cron, timezone, f))
                for f in next_fire_times(cron, timezone, start, limit)
                if f < end
            ]
        run_at = _instant(trigger.get("runAt"))
    except (CronError, KeyError, ValueError, LookupError):
        return []
    if run_at is not None and start < run_at < end:
        return [_Fire(run_at, run_at.astimezone(tz), None)]
    return []


def _offset_changes(timezone: str, start: datetime, end: datetime) -> list[dict]:
    """Where the zone's UTC offset changes within [start, end), to the minute."""
    tz = zone(timezone)
    changes, hour = [], start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        after = hour + timedelta(hours=1)
        before_offset, after_offset = (
            hour.astimezone(tz).utcoffset(),
            after.astimezone(tz).utcoffset(),
        )
        if before_offset != after_offset:
            low, high = hour, after
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == before_offset:
                    low = mid
                else:
                    high = mid
            forward = after_offset > before_offset
            changes.append(
                {
                    "at": high,
                    "text": f"{timezone}: clocks go {'forward' if forward else 'back'} "
                    f"({in_zone(high, timezone)})",
                }
            )
        hour = after
    return changes


def timeline(objs: list[dict], now: datetime, days: int = TIMELINE_DAYS) -> dict:
    """The next `days` days of fires of the given schedules on one UTC axis: each fire's
    position (percent of the window), daylight-saving shifts in their zones, and the busiest
    minutes (the most fires starting in the same minute, where more than one does)."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    end = start + timedelta(days=days)
    span = (end - start).total_seconds()

    def position(instant: datetime) -> float:
        return round(100 * (instant - start).total_seconds() / span, 3)

    per_minute: Counter[datetime] = Counter()
    lanes, zones = [], set()
    for obj in objs:
        # [start, end): a fire in the current minute is on the timeline.
        fires = _planned(
            obj, start - timedelta(microseconds=1), end, TIMELINE_FIRES_PER_SCHEDULE + 1
        )
        shown = fires[:TIMELINE_FIRES_PER_SCHEDULE]
        trigger = (obj.get("spec") or {}).get("trigger") or {}
        timezone = trigger.get("timezone") or "UTC"
        zones.add(timezone)
        per_minute.update(f.at for f in shown)
        lanes.append(
            {
                "namespace": obj["metadata"]["namespace"],
                "name": obj["metadata"]["name"],
                "timezone": timezone,
                "paused": bool((obj.get("spec") or {}).get("paused")),
                "fires": [
                    {
                        "at": utc_iso(f.at),
                        "zone": in_zone(f.at, timezone),
                        "left": position(f.at),
                        "note": f.note or "",
                    }
                    for f in shown
                ],
                "more": len(fires) > TIMELINE_FIRES_PER_SCHEDULE,
            }
        )
    busiest = [(minute, n) for minute, n in per_minute.most_common() if n > 1]
    top = busiest[0][1] if busiest else 0
    busy = sorted(m for m, n in busiest if n == top)
    for lane in lanes:
        for fire in lane["fires"]:
            fire["busy"] = top > 1 and _instant(fire["at"]) in busy
    hours = Counter(int((m - start).total_seconds() // 3600) for m in per_minute.elements())
    peak = max(hours.values(), default=0)
    shifts = []
    for timezone in sorted(zones):
        try:
            shifts += _offset_changes(timezone, start, end)
        except Exception:  # noqa: BLE001 - an unknown zone has no shifts to show
            continue
    return {
        "start": utc_iso(start),
        "end": utc_iso(end),
        "days": [
            {
                "label": f"{start + timedelta(days=d):%a %d %b}",
                "left": position(start + timedelta(days=d)),
            }
            for d in range(days)
        ],
        "lanes": lanes,
        "busiest": [{"at": utc_iso(m), "fires": top} for m in busy[:BUSIEST_LISTED]],
        "busiest_more": max(0, len(busy) - BUSIEST_LISTED),
        "overlaps": len(busiest),
        # Fires per hour of the window over every lane: the busy hours at a glance.
        "hours": [
            {
                "left": position(start + timedelta(hours=h)),
                "height": round(22 * n / peak, 2),
                "fires": n,
                "at": utc_iso(start + timedelta(hours=h)),
            }
            for h, n in sorted(hours.items())
        ],
        "peak_hour_fires": peak,
        "shifts": [
            {"at": utc_iso(s["at"]), "text": s["text"], "left": position(s["at"])}
            for s in sorted(shifts, key=lambda s: s["at"])
        ],
    }


TRIGGER_TYPES = ("event", "schedule", "recurring", "manual")


def run_row(run: dict) -> dict:
    """A run with its provenance (what started it) and payload, as the runs list shows it."""
    metadata = run.get("trigger_metadata") or {}
    return {
        "run_id": str(run["run_id"]),
        "tenant": run["tenant"],
        "workflow": f"{run['workflow_id']} v{run['workflow_version']}",
        "workflow_id": str(run["workflow_id"]),
        "status": run["status"],
        "trigger_type": run["trigger_type"],
        "trigger_label": trigger_label(run["trigger_type"], metadata),
        "created_at": utc_iso(run["created_at"]),
        "fire_key": run.get("trigger_fire_key") or "",
        "scheduled_for": (run.get("payload") or {}).get("scheduledFor", "")
        if run["trigger_type"] in ("schedule", "recurring")
        else "",
        "schedule": run.get("schedule_name") or "",
        "namespace": run.get("schedule_namespace") or "",
        "provenance": json.dumps(metadata, indent=2, sort_keys=True),
        "payload": json.dumps(run.get("payload") or {}, indent=2, sort_keys=True),
    }


def event_row(event: dict) -> dict:
    when = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    return {
        "at": when or "",
        "type": event.get("type", ""),
        "reason": event.get("reason", ""),
        "message": event.get("message", ""),
        "count": event.get("count") or 1,
    }
