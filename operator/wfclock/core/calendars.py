"""WorkflowCalendar: the dates on which a schedule that references it does not fire.

A calendar is public holidays of a country (and subdivision) from the pinned `holidays`
package, explicit dates and date ranges, and optionally "business days only" (Monday to Friday
minus the excluded dates). The operator derives it (`derive_calendar`) for a horizon of this
year and next and writes the result to Postgres, where the launcher refuses a fire on an
excluded date (its date in the schedule's own zone). `fire_refusal` is the same decision in
Python, for `status.nextFires` and `wfclock preview`; the database's is authoritative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import holidays as holidays_package
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wfclock.core.firetime import zone
from wfclock.core.model import Problem, SpecError, _problem

CALENDAR_KIND = "WorkflowCalendar"
CALENDAR_PLURAL = "workflowcalendars"
HOLIDAYS_VERSION = holidays_package.__version__
MAX_RANGE_DAYS = 366

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HolidaySource(_Model):
    country: str = Field(min_length=2, max_length=3)
    subdivision: str | None = Field(None, min_length=1, max_length=16)


class ExcludedDate(_Model):
    date: date
    name: str = Field("excluded date", min_length=1, max_length=128)


class ExcludedRange(_Model):
    from_: date = Field(alias="from")
    until: date
    name: str = Field("excluded range", min_length=1, max_length=128)

    @model_validator(mode="after")
    def _ordered(self) -> ExcludedRange:
        if self.until < self.from_:
            raise ValueError(f"until {self.until} is before from {self.from_}")
        if (self.until - self.from_).days >= MAX_RANGE_DAYS:
            raise ValueError(f"a range spans at most {MAX_RANGE_DAYS} days")
        return self


class WorkflowCalendarSpec(_Model):
    holidays: HolidaySource | None = None
    dates: list[ExcludedDate] = Field(default_factory=list, max_length=1000)
    ranges: list[ExcludedRange] = Field(default_factory=list, max_length=100)
    businessDaysOnly: bool = Field(False, strict=True)


def validate_calendar(data: dict) -> WorkflowCalendarSpec:
    """Parses and checks a WorkflowCalendar spec; raises SpecError naming every problem."""
    try:
        spec = WorkflowCalendarSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_problem(err) for err in exc.errors()]) from None
    source = spec.holidays
    if source is not None:
        supported = holidays_package.list_supported_countries()
        if source.country not in supported:
            raise SpecError(
                [
                    Problem(
                        "spec.holidays.country",
                        f"{source.country!r} is not a country the holidays package "
                        f"{HOLIDAYS_VERSION} knows; accepted: ISO 3166-1 alpha-2 codes such as "
                        "DE, FR, GB, US",
                    )
                ],
                reason="UnknownCountry",
            )
        subdivisions = supported[source.country]
        if source.subdivision is not None and source.subdivision not in subdivisions:
            accepted = ", ".join(subdivisions[:40]) or "none (leave it out)"
            raise SpecError(
                [
                    Problem(
                        "spec.holidays.subdivision",
                        f"{source.subdivision!r} is not a subdivision of {source.country}; "
                        f"accepted: {accepted}",
                    )
                ],
                reason="UnknownSubdivision",
            )
    return spec


@dataclass(frozen=True)
class DerivedCalendar:
    """A calendar as the launcher reads it: its excluded dates (with why) within a horizon."""

    horizon_start: date
    horizon_end: date
    excluded: dict[date, str] = field(default_factory=dict)
    business_days_only: bool = False
    holidays_version: str | None = None

    def refusal(self, day: date) -> str | None:
        """Why a fire on `day` is refused (None: it runs); as `wfclock_policy_refusal` says."""
        if day < self.horizon_start or day > self.horizon_end:
            return "beyond-horizon"
        if day in self.excluded:
            return self.excluded[day]
        if self.business_days_only and day.isoweekday() >= 6:
            return "weekend"
        return None


def horizon_for(today: date) -> tuple[date, date]:
    """This year and next: refreshed by the operator, so the next year is always known."""
    return date(today.year, 1, 1), date(today.year + 1, 12, 31)


def derive_calendar(spec: WorkflowCalendarSpec, today: date) -> DerivedCalendar:
    """The excluded dates of `spec` within the horizon around `today`. A date excluded for
    several reasons names them all, holidays first."""
    start, end = horizon_for(today)
    reasons: dict[date, list[str]] = {}
    if spec.holidays is not None:
        found = holidays_package.country_holidays(
            spec.holidays.country,
            subdiv=spec.holidays.subdivision,
            years=range(start.year, end.year + 1),
        )
        for day, name in sorted(found.items()):
            reasons.setdefault(day, []).append(name)
    for excluded in spec.dates:
        reasons.setdefault(excluded.date, []).append(excluded.name)
    for excluded_range in spec.ranges:
        day = max(excluded_range.from_, start)
        while day <= min(excluded_range.until, end):
            reasons.setdefault(day, []).append(excluded_range.name)
            day += timedelta(days=1)
    excluded = {day: "; ".join(names) for day, names in reasons.items() if start <= day <= end}
    version = HOLIDAYS_VERSION if spec.holidays is not None else None
    return DerivedCalendar(start, end, excluded, spec.businessDaysOnly, version)


def fire_refusal(
    names: list[str], calendars: dict[str, DerivedCalendar], timezone: str, instant: datetime
) -> str | None:
    """`calendar:<name>:<why>` for the first of `names` that refuses a fire at `instant` (its
    date in `timezone`), `calendar:<name>:missing` for one not derived; None: it runs."""
    day = instant.astimezone(zone(timezone)).date()
    for name in names:
        calendar = calendars.get(name)
        if calendar is None:
            return f"calendar:{name}:missing"
        why = calendar.refusal(day)
        if why:
            return f"calendar:{name}:{why}"
    return None


def calendar_status(derived: DerivedCalendar, generation: int, users: int) -> dict:
    """The status of a WorkflowCalendar: what it excludes, and from which data."""
    return {
        "phase": "Ready",
        "observedGeneration": generation,
        "holidaysVersion": derived.holidays_version,
        "horizon": {
            "from": derived.horizon_start.isoformat(),
            "until": derived.horizon_end.isoformat(),
        },
        "excludedDates": len(derived.excluded),
        "schedules": users,
    }
