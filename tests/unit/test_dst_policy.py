"""Daylight-saving policies in every zone of the conformance table, checked against an
independent wall-clock model (`tests/support/wallclock.py`) and against croniter, and the table
in `docs/time.md` checked to be exactly what the model gives.

Regenerate the table after a change of zones, crons or policies:

    WFCLOCK_WRITE_TIME_TABLE=1 .venv/bin/python -m pytest tests/unit/test_dst_policy.py -k table
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from wfclock.core.dst import (
    DST_POLICIES,
    _next_shifted_fire,
    is_fixed_time,
    next_policy_fires,
    next_shifted_fire,
    policy_fires_between,
    refusal,
    shifted_fires_between,
)
from wfclock.core.firetime import next_fire_times, parse_cron

from ..support.wallclock import POLICIES, transitions, walk_fires

DOC = Path(__file__).resolve().parents[2] / "docs" / "time.md"
START, END = "<!-- conformance-table:start -->", "<!-- conformance-table:end -->"
WINDOW = timedelta(hours=3)

# Zones with unusual rules, and the span whose offset changes the table shows.
ZONES = [
    ("Europe/Berlin", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("America/Santiago", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("Asia/Tehran", datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)),
    ("Africa/Casablanca", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("Pacific/Apia", datetime(2011, 12, 1, tzinfo=UTC), datetime(2012, 1, 1, tzinfo=UTC)),
]


def _walls(timezone: str, change: datetime) -> tuple[datetime, datetime]:
    """The wall clock just before the change (as if it ran on) and at it."""
    tz = ZoneInfo(timezone)
    before = (change - timedelta(minutes=1)).astimezone(tz).replace(tzinfo=None)
    return before + timedelta(minutes=1), change.astimezone(tz).replace(tzinfo=None)


def crons_for(timezone: str, change: datetime) -> list[str]:
    """Representative crons for a change: fixed times at the start and in the middle of the
    missing or repeated span, and an hourly wildcard."""
    old, new = _walls(timezone, change)
    low, high = min(old, new), max(old, new)
    middle = low + (high - low) / 2
    middle = middle.replace(minute=middle.minute // 15 * 15)
    crons = [f"{low.minute} {low.hour} * * *", f"{middle.minute} {middle.hour} * * *"]
    return [*dict.fromkeys(crons), "0 * * * *"]


def cases() -> list[tuple[str, datetime, str]]:
    return [
        (zone_name, change, cron)
        for zone_name, begin, end in ZONES
        for change in transitions(zone_name, begin, end)
        for cron in crons_for(zone_name, change)
    ]


def _offset(local: datetime) -> str:
    minutes = int(local.utcoffset().total_seconds() // 60)
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{sign}{minutes // 60:02d}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def _local(instant: datetime, timezone: str) -> str:
    local = instant.astimezone(ZoneInfo(timezone))
    return f"{local:%m-%d %H:%M}{_offset(local)}"


def table() -> str:
    head = "| Zone | Change (local) | Cron | " + " | ".join(POLICIES) + " |"
    lines = [head, "|" + "---|" * (3 + len(POLICIES))]
    for zone_name, change, cron in cases():
        old, new = _walls(zone_name, change)
        tz = ZoneInfo(zone_name)
        before = _offset((change - timedelta(minutes=1)).astimezone(tz))
        after = _offset(change.astimezone(tz))
        what = (
            f"{old:%Y-%m-%d %H:%M} → {new:%H:%M}"
            if old.date() == new.date()
            else (f"{old:%Y-%m-%d %H:%M} → {new:%Y-%m-%d %H:%M}")
        )
        cells = [
            ", ".join(
                _local(f, zone_name)
                for f in walk_fires(cron, zone_name, policy, change - WINDOW, change + WINDOW)
            )
            or "none"
            for policy in POLICIES
        ]
        row = [zone_name, f"{what} ({before} → {after})", f"`{cron}`", *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def test_every_zone_of_the_table_has_a_change():
    assert {zone_name for zone_name, _, _ in cases()} == {zone_name for zone_name, _, _ in ZONES}


def test_docs_time_md_holds_the_generated_conformance_table():
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    generated = table()
    if os.environ.get("WFCLOCK_WRITE_TIME_TABLE") == "1":
        DOC.write_text(f"{head}{START}\n{generated}{END}{tail}")
        text = DOC.read_text()
    assert f"{START}\n{generated}{END}" in text, (
        "docs/time.md's conformance table is not what the policies give; regenerate it with "
        "WFCLOCK_WRITE_TIME_TABLE=1 .venv/bin/python -m pytest tests/unit/test_dst_policy.py -k table"
    )


def test_the_policies_are_the_crd_enum():
    assert set(DST_POLICIES) == set(POLICIES)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "zone_name, change, cron",
    cases(),
    ids=[f"{z}-{c:%Y%m%d}-{cron}" for z, c, cron in cases()],
)
def test_each_policy_gives_the_wall_clock_models_fires(zone_name, change, cron, policy):
    begin, end = change - WINDOW, change + WINDOW
    expected = walk_fires(cron, zone_name, policy, begin, end)
    assert policy_fires_between(parse_cron(cron), zone_name, policy, begin, end) == expected


@pytest.mark.parametrize(
    "zone_name, change, cron",
    cases(),
    ids=[f"{z}-{c:%Y%m%d}-{cron}" for z, c, cron in cases()],
)
def test_kubernetes_policy_is_what_the_cronjob_fires(zone_name, change, cron):
    spec = parse_cron(cron)
    begin, end = change - WINDOW, change + WINDOW
    raw = [f for f in next_fire_times(spec, zone_name, begin, 20) if f <= end]
    assert policy_fires_between(spec, zone_name, "Kubernetes", begin, end) == raw


@pytest.mark.parametrize(
    "zone_name, change, cron",
    cases(),
    ids=[f"{z}-{c:%Y%m%d}-{cron}" for z, c, cron in cases()],
)
def test_refused_plus_shifted_fires_turn_the_cronjobs_fires_into_the_policys(
    zone_name, change, cron
):
    """What the launcher refuses and what the operator launches make the CronJob's raw fires
    exactly the policy's, for every policy."""
    spec = parse_cron(cron)
    begin, end = change - WINDOW, change + WINDOW
    raw = [f for f in next_fire_times(spec, zone_name, begin, 20) if f <= end]
    for policy in POLICIES:
        kept = [f for f in raw if refusal(spec, zone_name, policy, f) is None]
        shifted = shifted_fires_between(spec, zone_name, policy, begin, end)
        wanted = walk_fires(cron, zone_name, policy, begin, end)
        assert sorted(set(kept) | set(shifted)) == wanted, policy


# --- properties -----------------------------------------------------------------------------

PROPERTY_ZONES = [zone_name for zone_name, _, _ in ZONES] + [
    "Europe/London",
    "America/Havana",
    "Australia/Adelaide",
    "Pacific/Chatham",
    "America/St_Johns",
]
CRONS = st.one_of(
    st.builds(lambda m, h: f"{m} {h} * * *", st.integers(0, 59), st.integers(0, 23)),
    st.builds(lambda m: f"{m} * * * *", st.integers(0, 59)),
    st.sampled_from(["*/15 * * * *", "0 */2 * * *", "30 0-3 * * *", "0,30 1,2 * * *"]),
)


@functools.cache
def changes_in(zone_name: str, year: int) -> tuple[datetime, ...]:
    return tuple(
        transitions(
            zone_name, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        )
    )


@st.composite
def changes(draw):
    zone_name = draw(st.sampled_from(PROPERTY_ZONES))
    year = draw(st.integers(2005, 2030))
    found = changes_in(zone_name, year)
    if not found:  # the zone kept one offset that year
        zone_name, found = "Europe/Berlin", changes_in("Europe/Berlin", year)
    return zone_name, draw(st.sampled_from(found))


@settings(max_examples=60, deadline=None)
@given(changes(), CRONS, st.sampled_from(POLICIES), st.integers(-180, 180))
def test_property_policy_fires_agree_with_the_wall_clock_model(change, cron, policy, shift):
    """Kubernetes (and Auto for a wildcard job) is the CronJob's own fires, robfig/cron's quirks
    included (zones that change at 00:01, Chatham's 45-minute offset): the table and the parity
    tests check those; here every policy wfclock computes from the wall clock."""
    if policy == "Kubernetes" or (policy == "Auto" and cron.split()[1].startswith("*")):
        policy = "RunEachShiftMissing"
    if policy == "Auto" and cron.split()[0].startswith("*"):
        policy = "RunOnceSkipMissing"
    zone_name, at = change
    begin = at + timedelta(minutes=shift) - WINDOW
    end = begin + 2 * WINDOW
    expected = walk_fires(cron, zone_name, policy, begin, end)
    assert policy_fires_between(parse_cron(cron), zone_name, policy, begin, end) == expected


@settings(max_examples=40, deadline=None)
@given(changes(), st.integers(0, 59), st.integers(0, 23))
def test_property_croniter_is_run_each_shift_missing_for_fixed_time_jobs(change, minute, hour):
    """croniter, an independent implementation, runs a fixed time missing in a gap right after
    the gap and a repeated one at each occurrence: our RunEachShiftMissing."""
    zone_name, at = change
    cron = f"{minute} {hour} * * *"
    tz = ZoneInfo(zone_name)
    begin = at - timedelta(days=1)
    iterator = croniter(cron, begin.astimezone(tz))
    theirs = []
    while (fire := iterator.get_next(datetime).astimezone(UTC)) <= at + timedelta(days=1):
        theirs.append(fire)
    ours = policy_fires_between(
        parse_cron(cron), zone_name, "RunEachShiftMissing", begin, at + timedelta(days=1)
    )
    assert ours == theirs


# --- unit examples ----------------------------------------------------------------------------


def local(instant, timezone):
    return instant.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M%z")


def test_auto_treats_fixed_times_like_vixie_cron_and_wildcards_by_elapsed_time():
    assert is_fixed_time(parse_cron("30 2 * * *")) and is_fixed_time(parse_cron("0 1-3 * * *"))
    assert not is_fixed_time(parse_cron("*/15 2 * * *"))
    assert not is_fixed_time(parse_cron("0 */2 * * *")) and not is_fixed_time(parse_cron("@hourly"))


def test_a_fixed_time_in_berlins_gap_runs_at_three_under_auto():
    fires = next_policy_fires(
        parse_cron("30 2 * * *"), "Europe/Berlin", "Auto", datetime(2026, 3, 28, 12, tzinfo=UTC), 2
    )
    assert [local(f, "Europe/Berlin") for f in fires] == [
        "2026-03-29 03:00+0200",
        "2026-03-30 02:30+0200",
    ]


def test_apias_skipped_day_runs_its_fires_once_at_the_first_instant_of_the_next_day():
    fires = next_policy_fires(
        parse_cron("0 9,17 * * *"),
        "Pacific/Apia",
        "Auto",
        datetime(2011, 12, 30, 4, tzinfo=UTC),  # 18:00 on the 29th
        3,
    )
    assert [local(f, "Pacific/Apia") for f in fires] == [
        "2011-12-31 00:00+1400",
        "2011-12-31 09:00+1400",
        "2011-12-31 17:00+1400",
    ]


def test_last_day_of_month_fires_on_the_last_day_only():
    fires = next_policy_fires(
        parse_cron("0 18 L * *"), "Europe/Berlin", "Auto", datetime(2028, 1, 15, tzinfo=UTC), 3
    )
    assert [local(f, "Europe/Berlin") for f in fires] == [
        "2028-01-31 18:00+0100",
        "2028-02-29 18:00+0100",
        "2028-03-31 18:00+0200",
    ]


def test_the_launcher_refuses_the_days_before_the_last():
    spec = parse_cron("0 18 L * *")
    refused = refusal(spec, "UTC", "Auto", datetime(2026, 4, 29, 18, tzinfo=UTC))
    assert refused == "not-last-day-of-month: 2026-04-29 is not the last day of its month"
    assert refusal(spec, "UTC", "Auto", datetime(2026, 4, 30, 18, tzinfo=UTC)) is None


def test_an_instant_that_is_no_cronjob_fire_is_not_refused():
    """Another process's time-zone data may disagree: only a raw fire the policy drops is ours
    to refuse."""
    spec = parse_cron("30 1 * * *")
    assert (
        refusal(spec, "America/New_York", "Auto", datetime(2026, 11, 1, 6, 31, tzinfo=UTC)) is None
    )


def test_the_next_shifted_fire_is_computed_once_per_expression_zone_policy_and_minute():
    """A registration and a restart ask every schedule for its next shifted fire: schedules
    that share an expression, zone and policy share the search within a minute."""
    spec = parse_cron("30 2 * * *")
    after = datetime(2026, 2, 1, 10, 0, 5, tzinfo=UTC)
    _next_shifted_fire.cache_clear()
    first = next_shifted_fire(spec, "Europe/Berlin", "Auto", after)
    again = next_shifted_fire(spec, "Europe/Berlin", "Auto", after + timedelta(seconds=50))
    assert first == again == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:30 runs at 03:00 CEST
    assert _next_shifted_fire.cache_info().misses == 1


@pytest.mark.parametrize("second", [0, 10, 29, 30, 31, 59])
def test_a_shifted_fire_within_the_minute_asked_about_is_still_exact(second):
    """Liberia's change of 1972 ended a gap at 00:44:30 UTC, at no whole minute: asked within
    that minute, the answer is the search's own, before the fire and after it."""
    spec = parse_cron("30 0 * * *")
    after = datetime(1972, 1, 7, 0, 44, second, tzinfo=UTC)
    found = shifted_fires_between(
        spec, "Africa/Monrovia", "Auto", after, after + timedelta(days=400)
    )
    assert next_shifted_fire(spec, "Africa/Monrovia", "Auto", after) == found[0]
    assert (found[0] == datetime(1972, 1, 7, 0, 44, 30, tzinfo=UTC)) == (second < 30)
