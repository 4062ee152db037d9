"""Fires as instants and keys: the fire key, RFC 3339 instants, the scheduled time a CronJob's Job
name carries, and the fires a schedule makes in a window. Imported on every fire's path: it needs
nothing beyond the standard library and `firetime`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import takewhile

from wfclock.core.dst import shifted_fires_between
from wfclock.core.firetime import fire_times_after, parse_cron

# The clock payload's schema, shipped in `wfclock/schemas/`.
PAYLOAD_SCHEMA_REF = "payload.WorkflowClockTrigger.v1"


def utc_iso(instant: datetime) -> str:
    """`2026-03-08T14:00:00Z`: the fire key's and the payload's form of an instant."""
    text = instant.astimezone(UTC).isoformat(
        timespec="milliseconds" if instant.microsecond else "seconds"
    )
    return text.replace("+00:00", "Z")


def fire_key_for(schedule_id: uuid.UUID | str, scheduled_for: datetime) -> str:
    """`workflow-schedule-fire:{scheduleId}:{scheduledFor as UTC ISO-8601}`."""
    return f"workflow-schedule-fire:{schedule_id}:{utc_iso(scheduled_for)}"


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime, keeping its offset and at most milliseconds
    (fire keys and payloads carry no more); ValueError naming the problem otherwise."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an RFC 3339 timestamp; use e.g. 2026-12-01T09:00:00+01:00"
        ) from None
    if value.tzinfo is None:
        raise ValueError(
            f"{text!r} has no UTC offset; write it with 'Z' or an offset such as +01:00"
        )
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as a UTC instant; ValueError otherwise."""
    return parse_rfc3339(text).astimezone(UTC)


def scheduled_for_from_job_name(job_name: str, cronjob_name: str | None = None) -> datetime:
    """The instant the CronJob controller scheduled, from its Job name `<cronjob>-<unix minutes>`."""
    prefix, sep, minutes = job_name.rpartition("-")
    if not sep or not minutes.isdigit() or (cronjob_name and prefix != cronjob_name):
        expected = f"{cronjob_name or '<cronjob>'}-<unix minutes>"
        raise ValueError(
            f"Job name {job_name!r} carries no scheduled time: expected {expected}, as the "
            "CronJob controller names Jobs. A manual `kubectl create job --from=cronjob/...` "
            "has no scheduled fire; use `wfclock backfill` or a manual start instead"
        )
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(minutes=int(minutes))
    if not datetime(2000, 1, 1, tzinfo=UTC) <= instant <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError(
            f"Job name {job_name!r} ends in {minutes}, which is not a plausible scheduled "
            "time in unix minutes"
        )
    return instant


def fires_between(schedule: dict, begin: datetime, end: datetime) -> list[datetime]:
    """The fires in (begin, end] of a schedule given as its state row (`trigger_type`, `run_at`,
    `cron`, `timezone`, `dst_policy`): every fire a delivery is owed for, the CronJob's (the
    launcher refuses those its time policy drops) and the shifted ones the operator launches."""
    if schedule["trigger_type"] == "schedule":
        run_at = schedule["run_at"]
        return [run_at] if begin < run_at <= end else []
    spec = parse_cron(schedule["cron"])
    shifted = shifted_fires_between(
        spec, schedule["timezone"], schedule.get("dst_policy"), begin, end
    )
    if shifted:
        return sorted(set(_raw_fires_between(spec, schedule["timezone"], begin, end) + shifted))
    return _raw_fires_between(spec, schedule["timezone"], begin, end)


def _raw_fires_between(spec, timezone: str, begin: datetime, end: datetime) -> list[datetime]:
    # One fire at a time: the accounting asks for a few minutes of an every-minute schedule on
    # every sweep, and a batch computed ahead (500 fires) was most of the sweep's CPU.
    return list(takewhile(lambda fire: fire <= end, fire_times_after(spec, timezone, begin)))
