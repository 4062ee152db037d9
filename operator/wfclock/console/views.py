"""What the console's pages show, as plain dicts built from Kubernetes objects and ledger rows.
Pure: no I/O, the time passed in, so every page's content is unit-tested without a browser."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cron_descriptor import Options, get_description

from wfclock.core.calendars import DerivedCalendar, fire_refusal
from wfclock.core.dst import AUTO
from wfclock.core.fires import parse_instant, utc_iso
from wfclock.core.firetime import CronError, parse_cron, zone
from wfclock.core.model import duration_seconds, trigger_label
from wfclock.core.nextfires import planned_fires_between
from wfclock.core.status import PHASES, FirePolicy

TIMELINE_DAYS = 7
# A schedule firing every minute makes 10,080 fires in 7 days; beyond this many the timeline
# shows the first ones and says how many more there are.
TIMELINE_FIRES_PER_SCHEDULE = 2000
RECENT_FIRES = 20
BUSIEST_LISTED = 10
EXCLUDED_LISTED = 20  # per schedule, in the timeline's list (all are marked on its lane)
# Every phase a schedule can show (the list filters by any of them, present or not).
PHASE_CHOICES = ("Pending", *PHASES.values(), "Missed", "Failed", "Ended")


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
        "phase_message": _ready_message(status) if status.get("phase") == "Ended" else "",
        "paused": bool(spec.get("paused")),
        "pause_reason": pause_reason(obj),
        "run_now_requested": ((meta.get("annotations") or {}).get("wfclock.dev/run-now") or ""),
        # The operator's answer to the latest run-now request (issue 15): outcome, run, reason.
        "run_now_answer": dict(status.get("runNow") or {}),
    }


def _ready_message(status: dict) -> str:
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return (ready[0].get("message") or "") if ready else ""


def filter_rows(rows: list[dict], **wanted: str) -> list[dict]:
    """Rows whose fields equal every non-empty filter (namespace, tenant, type, phase)."""
    return [r for r in rows if all(not v or r.get(k) == v for k, v in wanted.items())]


def choices(rows: list[dict], field: str) -> list[str]:
    return sorted({r[field] for r in rows if r.get(field)})


def phase_choices(rows: list[dict]) -> list[str]:
    """Every phase a schedule can have (Ended among them), then any other a row shows."""
    known = list(dict.fromkeys(PHASE_CHOICES))
    return known + sorted({r["phase"] for r in rows} - set(known))


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


def next_fires(
    obj: dict, now: datetime, count: int = 10, policy: FirePolicy | None = None
) -> list[dict]:
    """The next fires, and the ones before them that will not run (with why), oldest first:
    the operator's `status.nextFires` and `status.excludedFires`; computed from the spec the
    same way (`core.nextfires`) while the status has none."""
    status = obj.get("status") or {}
    if status.get("nextFires"):
        listed = [dict(f) for f in status["nextFires"]]
        listed += [{**f, "refused": f.get("reason", "")} for f in status.get("excludedFires") or []]
        fires = sorted(listed, key=lambda f: f.get("at", ""))
    else:
        fires, runs = [], 0
        for fire in _planned(obj, now, now + timedelta(days=366), 4 * count, policy):
            fires.append(fire)
            runs += "refused" not in fire
            if runs >= count:
                break
    return [_fire_view(f) for f in fires]


def _fire_view(fire: dict) -> dict:
    """A fire as the pages show it: `refused` (the launcher's reason) put in words, with the
    calendar that refuses it named; `shifted` where a daylight-saving gap moved it."""
    view = dict(fire)
    refused = fire.get("refused")
    if refused is not None:
        view["excluded"] = refusal_in_words(refused)
        view["calendar"] = refused.split(":")[1] if refused.startswith("calendar:") else ""
    note = fire.get("note") or ""
    # The status's notes: a policy's shift ("runs after a DST gap") or the CronJob's own move.
    view["shifted"] = bool(fire.get("shifted")) or "DST gap" in note or "moved by a DST" in note
    return view


def refusal_in_words(reason: str) -> str:
    """`calendar:office:Christmas Day` -> "excluded by calendar office: Christmas Day"."""
    if reason.startswith("calendar:"):
        _, name, why = reason.split(":", 2)
        if why == "missing":
            return f"excluded: calendar {name} does not exist (every fire is refused)"
        if why == "beyond-horizon":
            return f"excluded by calendar {name}: beyond the dates it is derived for"
        return f"excluded by calendar {name}: {why}"
    return {
        "before-active-from": "excluded: before activeFrom",
        "after-active-until": "excluded: after activeUntil",
        "max-fires-reached": "excluded: maxFires reached",
    }.get(reason, f"excluded: {reason}")


def time_policy(obj: dict, policy: FirePolicy | None, now: datetime) -> dict:
    """A recurring schedule's time policy as its page shows it: the daylight-saving policy, each
    calendar with what it excludes in the next TIMELINE_DAYS days (dates in the schedule's
    zone), the bounds with the fires launched so far and left, and the jitter."""
    trigger = (obj.get("spec") or {}).get("trigger") or {}
    status = obj.get("status") or {}
    if trigger.get("type") != "recurring":
        return {}
    known = policy is not None  # None: the ledger is not read for this namespace
    policy = policy or FirePolicy()
    timezone = _zone_or_utc(trigger.get("timezone"))
    today = now.astimezone(zone(timezone)).date()
    days = [today + timedelta(days=d) for d in range(TIMELINE_DAYS)]
    calendars = []
    for name in trigger.get("calendars") or []:
        derived = policy.calendars.get(name)
        calendars.append(
            {
                "name": name,
                "missing": known and derived is None,
                "known": known,
                "excludes": _calendar_excludes(derived, days) if derived else [],
                "business_days_only": bool(derived and derived.business_days_only),
                "holidays_version": (derived.holidays_version or "") if derived else "",
            }
        )
    max_fires = trigger.get("maxFires")
    jitter = trigger.get("jitter") or ""
    try:
        jitter_seconds = duration_seconds(jitter) if jitter else 0
    except ValueError:
        jitter_seconds = 0
    active_from, active_until = (
        _instant(trigger.get("activeFrom")),
        _instant(trigger.get("activeUntil")),
    )
    return {
        "dst_policy": trigger.get("dstPolicy") or AUTO,
        "dst_policy_default": not trigger.get("dstPolicy"),
        "calendars": calendars,
        "active_from": utc_iso(active_from) if active_from else "",
        "active_from_zone": in_zone(active_from, timezone),
        "active_until": utc_iso(active_until) if active_until else "",
        "active_until_zone": in_zone(active_until, timezone),
        "max_fires": max_fires,
        "launched": policy.launched if max_fires is not None and known else None,
        "remaining": status.get("remainingFires")
        if status.get("remainingFires") is not None
        else (max(max_fires - policy.launched, 0) if max_fires is not None and known else None),
        "jitter": jitter,
        "jitter_seconds": jitter_seconds,
    }


def _calendar_excludes(derived: DerivedCalendar, days: list) -> list[dict]:
    excludes = []
    for day in days:
        why = derived.refusal(day)
        if why:
            excludes.append({"date": day.isoformat(), "weekday": f"{day:%a}", "why": why})
    return excludes


def _zone_or_utc(timezone: str | None) -> str:
    try:
        zone(timezone or "UTC")
    except Exception:  # noqa: BLE001 - an invalid schedule is still shown, in UTC
        return "UTC"
    return timezone or "UTC"


def _planned(
    obj: dict, start: datetime, end: datetime, limit: int, policy: FirePolicy | None = None
) -> list[dict]:
    """The fires in (start, end) of a schedule, as the operator and the launcher decide them:
    a recurring schedule's under its daylight-saving policy, calendars (from `policy`, as the
    operator read them from Postgres; a calendar absent from it refuses, as the launcher does)
    and bounds, with `refused` on the fires the launcher refuses. `policy` None: calendars and
    maxFires unknown (not readable), not applied. At most `limit` are listed."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("paused") or status.get("phase") in ("Ended", "Invalid"):
        return []
    trigger = spec.get("trigger") or {}
    timezone = trigger.get("timezone") or "UTC"
    try:
        tz = zone(timezone)
        if trigger.get("type") == "recurring":
            cron = parse_cron(trigger["cron"])
            # No policy: the calendars and launched fires were not read; not applied.
            names = list(trigger.get("calendars") or []) if policy is not None else []
            calendars = policy.calendars if policy is not None else {}
            max_fires = trigger.get("maxFires")
            counted = isinstance(max_fires, int) and policy is not None
            return planned_fires_between(
                cron,
                timezone,
                start,
                end - timedelta(microseconds=1),
                lambda fire: fire_refusal(names, calendars, timezone, fire) if names else None,
                active_from=_instant(trigger.get("activeFrom")),
                active_until=_instant(trigger.get("activeUntil")),
                remaining=max_fires - policy.launched if counted else None,
                dst_policy=trigger.get("dstPolicy") or AUTO,
                limit=limit,
            )
        run_at = _instant(trigger.get("runAt"))
    except (CronError, KeyError, ValueError, LookupError):
        return []
    if run_at is not None and start < run_at < end:
        return [{"at": utc_iso(run_at), "local": run_at.astimezone(tz).isoformat()}]
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


def timeline(
    objs: list[dict],
    now: datetime,
    days: int = TIMELINE_DAYS,
    policies: dict[str, FirePolicy] | None = None,
) -> dict:
    """The next `days` days of fires of the given schedules on one UTC axis: each fire's
    position (percent of the window), daylight-saving shifts in their zones and the fires they
    move, the fires a calendar or a bound refuses (`excluded`, with the calendar's name), and
    the busiest minutes (the most fires starting in the same minute, where more than one does).
    `policies` (by uid): each recurring schedule's calendars and launched fires, as read from
    Postgres (None: not readable, calendars and maxFires not applied); fires are those the
    operator's `status.nextFires` is made of."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    end = start + timedelta(days=days)
    span = (end - start).total_seconds()

    def position(instant: datetime) -> float:
        return round(100 * (instant - start).total_seconds() / span, 3)

    per_minute: Counter[datetime] = Counter()
    lanes, zones = [], set()
    for obj in objs:
        # [start, end): a fire in the current minute is on the timeline.
        planned = _planned(
            obj,
            start - timedelta(microseconds=1),
            end,
            TIMELINE_FIRES_PER_SCHEDULE + 1,
            (policies or {}).get(obj["metadata"].get("uid", "")),
        )
        shown = [_fire_view(f) for f in planned[:TIMELINE_FIRES_PER_SCHEDULE]]
        trigger = (obj.get("spec") or {}).get("trigger") or {}
        timezone = trigger.get("timezone") or "UTC"
        zones.add(timezone)
        runs = [f for f in shown if "excluded" not in f]
        per_minute.update(_instant(f["at"]) for f in runs)
        fires = []
        for f in shown:
            at = _instant(f["at"])
            fire = {
                "at": f["at"],
                "zone": in_zone(at, timezone),
                "left": position(at),
                "note": f.get("note") or "",
                "shifted": f["shifted"],
            }
            if "excluded" in f:
                fire.update(excluded=f["excluded"], calendar=f["calendar"])
            fires.append(fire)
        lanes.append(
            {
                "namespace": obj["metadata"]["namespace"],
                "name": obj["metadata"]["name"],
                "timezone": timezone,
                "paused": bool((obj.get("spec") or {}).get("paused")),
                "dst_policy": (trigger.get("dstPolicy") or AUTO)
                if trigger.get("type") == "recurring"
                else "",
                "calendars": list(trigger.get("calendars") or []),
                "fires": [f for f in fires if "excluded" not in f],
                "excluded": [f for f in fires if "excluded" in f],
                "more": len(planned) > TIMELINE_FIRES_PER_SCHEDULE,
            }
        )
    busiest = [(minute, n) for minute, n in per_minute.most_common() if n > 1]
    top = busiest[0][1] if busiest else 0
    busy = sorted(m for m, n in busiest if n == top)
    busy_minutes = set(busy)
    for lane in lanes:
        for fire in lane["fires"]:
            fire["busy"] = top > 1 and _instant(fire["at"]) in busy_minutes
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
        # The fires a calendar or a bound refuses, by schedule, oldest first.
        "excluded": [
            {"schedule": f"{lane['namespace']}/{lane['name']}", **fire}
            for lane in lanes
            for fire in lane["excluded"][:EXCLUDED_LISTED]
        ],
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
