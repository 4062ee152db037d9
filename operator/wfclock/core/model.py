"""The trigger contract and the WorkflowSchedule resource, shared by the operator, CLI and tests.

Validation runs in two layers: the shape (pydantic, also enforced by the CRD's schema) and the
rules that need context (a clock for "in the future", the edition, the minimum interval).
`validate_spec` runs both and raises `SpecError`, whose messages name the field, what is wrong
and what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from wfclock.core.dst import DST_POLICIES
from wfclock.core.fires import parse_rfc3339
from wfclock.core.firetime import CronError, CronSpec, minimum_gap, parse_cron, zone

API_GROUP = "wfclock.dev"
API_VERSION = "v1alpha1"
KIND = "WorkflowSchedule"
PLURAL = "workflowschedules"
# Every version the CRD serves, one schema for all (conversion strategy None); the operator
# watches and writes API_VERSION (docs/day-two.md).
SERVED_VERSIONS = ("v1alpha1", "v1beta1")
CRD_NAME = f"{PLURAL}.{API_GROUP}"


def _check_zone(name: str) -> str:
    try:
        zone(name)
    except CronError as exc:
        raise ValueError(str(exc)) from None
    return name


# The CRD's rule for runAt: RFC 3339 with an offset.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

# An IANA time zone name, checked against the pinned tzdata package.
TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OneTimeTrigger(_Model):
    """One-time (`type: schedule`, the runtime's name): fires once at `runAt`."""

    type: Literal["schedule"]
    runAt: datetime
    timezone: TimeZoneName = "UTC"

    @property
    def instant(self) -> datetime:
        """`runAt` as a UTC instant: what every name, key and comparison derives from."""
        return self.runAt.astimezone(UTC)

    @field_validator("runAt", mode="before")
    @classmethod
    def _rfc3339_with_offset(cls, value: object) -> object:
        return _rfc3339(value)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        return value
    parsed = parse_rfc3339(value)
    # Python reads more ISO 8601 forms than RFC 3339 has (a space for 'T', no seconds,
    # the basic format); the CRD's rule refuses them, and so does this.
    if not _RFC3339.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an RFC 3339 timestamp (date 'T' time to the second, then 'Z' "
            "or an offset); use e.g. 2026-12-01T09:00:00+01:00"
        )
    return parsed


# A jitter as the CRD accepts it: hours, minutes and seconds, e.g. 90s, 5m, 1h30m.
_DURATION = re.compile(r"(?:([0-9]{1,3})h)?(?:([0-9]{1,4})m)?(?:([0-9]{1,6})s)?")


def duration_seconds(value: str) -> int:
    match = _DURATION.fullmatch(value)
    if not value or match is None:
        raise ValueError(
            f"{value!r} is not a duration; write hours, minutes and seconds such as 90s, 5m "
            "or 1h30m"
        )
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


CalendarName = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]


DstPolicy = Literal[DST_POLICIES]


class RecurringTrigger(_Model):
    """Recurring: a 5-field cron evaluated in an IANA time zone, with a daylight-saving policy
    (`wfclock.core.dst`). `cron` is the normalised numeric form (names and macros replaced, `L`
    kept); the CronJob is registered with `spec.registered`."""

    type: Literal["recurring"]
    cron: str
    timezone: TimeZoneName
    # WorkflowCalendars of the schedule's namespace: a fire on a date any of them excludes (its
    # date in `timezone`) is skipped; a calendar that does not exist refuses every fire.
    calendars: list[CalendarName] = Field(default_factory=list, max_length=8)
    # Bounds: fires before activeFrom, after activeUntil, or past maxFires launched fires are
    # skipped; past the last one the schedule ends (phase Ended, its CronJob removed).
    activeFrom: datetime | None = None
    activeUntil: datetime | None = None
    maxFires: int | None = Field(None, ge=1, le=1_000_000, strict=True)
    # A spread per fire (the same fire always waits the same offset in [0, jitter]).
    jitter: str | None = None

    @field_validator("activeFrom", "activeUntil", mode="before")
    @classmethod
    def _bound_rfc3339(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError(
                f"{value!r} is not an RFC 3339 timestamp; write it as a string such as "
                "2026-12-01T09:00:00+01:00"
            )
        return _rfc3339(value)

    @field_validator("jitter")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @field_validator("calendars")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a calendar twice; list each once")
        return value

    @property
    def jitter_seconds(self) -> int:
        return duration_seconds(self.jitter) if self.jitter else 0

    dstPolicy: DstPolicy = "Auto"

    @field_validator("cron", mode="before")
    @classmethod
    def _five_fields(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_cron(value).expression
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def spec(self) -> CronSpec:
        return parse_cron(self.cron)


ClockTrigger = Annotated[OneTimeTrigger | RecurringTrigger, Field(discriminator="type")]

MissedFirePolicy = Literal["latest", "skip", "catchUp"]
OverlapPolicy = Literal["Allow", "Skip", "BufferOne"]


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class WorkflowScheduleSpec(_Model):
    # Integers and booleans are strict, as in the CRD's schema: "1", 1.0, "yes" or true for an
    # integer are refused here too, so `wfclock validate` never calls valid what the API refuses.
    tenant: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    workflowId: UUID
    workflowVersion: int = Field(ge=1, strict=True)
    trigger: ClockTrigger
    paused: bool = Field(False, strict=True)
    pauseReason: str | None = Field(None, min_length=1, max_length=256)
    overlapPolicy: OverlapPolicy = "Allow"
    payloadSchemaMode: str = "pinned"
    startingDeadlineSeconds: int = Field(300, ge=10, le=86400, strict=True)
    missedFires: MissedFirePolicy = "latest"
    catchUpWindowSeconds: int = Field(3600, ge=60, le=7 * 86400, strict=True)
    successfulJobsHistoryLimit: int = Field(3, ge=0, le=100, strict=True)
    failedJobsHistoryLimit: int = Field(3, ge=0, le=100, strict=True)
    backoffLimit: int = Field(6, ge=0, le=20, strict=True)
    # One-time only: deleted this long after its fire launched (absent: kept; see docs/day-two.md).
    deleteAfterCompletionSeconds: int | None = Field(None, ge=0, le=365 * 86400, strict=True)

    @field_validator("workflowId", mode="before")
    @classmethod
    def _canonical_uuid(cls, value: object) -> object:
        if isinstance(value, str) and not _UUID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a UUID; write it as 8-4-4-4-12 hex digits, e.g. "
                "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"
            )
        return value

    @field_validator("payloadSchemaMode")
    @classmethod
    def _pinned_only(cls, value: str) -> str:
        if value != "pinned":
            raise ValueError(
                f"{value!r} is not accepted; time triggers use a fixed payload, "
                "so only 'pinned' is accepted"
            )
        return value


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec wfclock refuses; `problems` lists each field and what is accepted there."""

    def __init__(self, problems: list[Problem], reason: str = "InvalidSpec"):
        self.problems = problems
        self.reason = reason
        super().__init__("; ".join(str(p) for p in problems))


# The CRD's CEL rule on spec gives the same message.
PAUSE_REASON_NEEDS_PAUSED = (
    "is only for a paused schedule; set paused: true with it, or remove pauseReason"
)


@dataclass(frozen=True)
class Rules:
    """The context-dependent rules: an injected clock, the edition and the minimum interval."""

    now: datetime
    edition: str = "enterprise"
    minimum_interval: timedelta = timedelta(minutes=5)


def validate_spec(data: dict, rules: Rules, *, check_run_at: bool = True) -> WorkflowScheduleSpec:
    """Parses and checks a WorkflowSchedule spec; raises SpecError naming every problem.

    `check_run_at=False` skips the "in the future" rule, for a one-time schedule that was
    accepted before and whose time has come (it is due, not invalid).
    """
    if rules.edition != "enterprise" and isinstance(data, dict) and "trigger" in data:
        raise SpecError(
            [
                Problem(
                    "spec.trigger",
                    "time triggers are an enterprise-edition feature; this operator runs "
                    "the community edition (WFCLOCK_EDITION=community)",
                )
            ],
            reason="EditionNotSupported",
        )
    try:
        spec = WorkflowScheduleSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_problem(err) for err in exc.errors()]) from None
    if spec.pauseReason is not None and not spec.paused:
        raise SpecError([Problem("spec.pauseReason", PAUSE_REASON_NEEDS_PAUSED)])
    trigger = spec.trigger
    if isinstance(trigger, OneTimeTrigger):
        if check_run_at and trigger.runAt <= rules.now:
            raise SpecError(
                [
                    Problem(
                        "spec.trigger.runAt",
                        f"{trigger.runAt.isoformat()} is in the past; a one-time schedule "
                        "needs a future timestamp",
                    )
                ],
                reason="RunAtInPast",
            )
    else:
        if spec.deleteAfterCompletionSeconds is not None:
            raise SpecError(
                [
                    Problem(
                        "spec.deleteAfterCompletionSeconds",
                        "is only for one-time schedules (trigger.type: schedule); a recurring "
                        "schedule never completes, so remove it",
                    )
                ]
            )
        gap = minimum_gap(trigger.spec, trigger.timezone, rules.now)
        _check_bounds(trigger, gap)
        if gap < rules.minimum_interval:
            raise SpecError(
                [
                    Problem(
                        "spec.trigger.cron",
                        f"{trigger.cron!r} fires every {_minutes(gap)} at its closest; the "
                        f"minimum interval between fires is {_minutes(rules.minimum_interval)}",
                    )
                ],
                reason="TooFrequent",
            )
    return spec


def _check_bounds(trigger: RecurringTrigger, gap: timedelta) -> None:
    """activeUntil after activeFrom; a jitter shorter than the interval between fires."""
    if trigger.activeFrom and trigger.activeUntil and trigger.activeUntil <= trigger.activeFrom:
        raise SpecError(
            [
                Problem(
                    "spec.trigger.activeUntil",
                    f"{trigger.activeUntil.isoformat()} is not after activeFrom "
                    f"{trigger.activeFrom.isoformat()}; the active window needs "
                    "activeFrom < activeUntil",
                )
            ],
            reason="InvalidBounds",
        )
    if trigger.jitter and timedelta(seconds=trigger.jitter_seconds) >= gap:
        raise SpecError(
            [
                Problem(
                    "spec.trigger.jitter",
                    f"{trigger.jitter!r} is not shorter than the interval between fires "
                    f"({_minutes(gap)} at its closest); accepted: up to just under that interval",
                )
            ],
            reason="InvalidJitter",
        )


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _problem(err: dict) -> Problem:
    # A discriminated union puts the chosen variant after `trigger` in the path; the field path
    # is what users see (a field named `schedule` elsewhere keeps its name).
    parts = [str(part) for part in err["loc"]]
    loc = [
        part
        for i, part in enumerate(parts)
        if not (i > 0 and parts[i - 1] == "trigger" and part in ("schedule", "recurring"))
    ]
    path = "spec." + ".".join(loc) if loc else "spec"
    message = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not a known field"
    elif kind == "union_tag_invalid":
        message = (
            f"type {err.get('input', {}).get('type')!r} is not a clock trigger; "
            "accepted: 'schedule' (one-time) or 'recurring'"
        )
    elif kind == "union_tag_not_found":
        message = "needs 'type': 'schedule' (one-time) or 'recurring'"
    elif kind == "uuid_parsing":
        message = f"{err.get('input')!r} is not a UUID"
    return Problem(path, message)


def trigger_label(trigger_type: str, metadata: dict | None = None) -> str:
    """How runs are labelled for people: distinct for every real trigger type."""
    if trigger_type == "schedule":
        return "One-time schedule"
    if trigger_type == "recurring":
        return "Recurring schedule"
    if trigger_type == "event":
        return f"Event: {(metadata or {}).get('eventName', '?')}"
    return "Manual"


class WorkflowClockTriggerV1(_Model):
    """The clock payload, matching `schemas/payload.WorkflowClockTrigger.v1.json`."""

    triggerType: Literal["schedule", "recurring"]
    scheduleId: UUID
    scheduledFor: datetime
    firedAt: datetime
    timezone: str
    workflowId: UUID
    workflowVersion: int = Field(ge=1)
    cron: str | None = None
