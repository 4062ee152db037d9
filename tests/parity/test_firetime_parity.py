"""Next fires agree with robfig/cron/v3, the parser the CronJob controller uses, instant for
instant, including the skipped and the repeated hour of daylight-saving changes.

The reference is a small Go program built from the pinned module (tests/reference/cronref) that
reads zone data from the same pinned tzdata package as wfclock.
"""

from __future__ import annotations

import os
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tzdata
from wfclock.core.firetime import CronError, _offset_changes, next_fire_times, parse_cron, zone

ROOT = Path(__file__).resolve().parents[2]
DST_ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Africa/Cairo",
    "America/Santiago",
]
FIXED_ZONES = ["Asia/Kolkata", "UTC"]
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 12, 31, tzinfo=UTC)
FIRES_PER_CASE = 4


@pytest.fixture(scope="module")
def reference():
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-control-plane.sh"), "cronref"],
        check=True,
        capture_output=True,
        text=True,
    )
    binary = Path(out.stdout.strip().splitlines()[-1]).parents[0] / "cronref"
    env = {**os.environ, "WFCLOCK_TZDATA_DIR": str(Path(tzdata.__file__).parent / "zoneinfo")}

    def run(cases):
        text = "".join(f"{c}\t{z}\t{int(s.timestamp())}\t{FIRES_PER_CASE}\n" for c, z, s in cases)
        done = subprocess.run(
            [str(binary)], input=text, capture_output=True, text=True, env=env, check=True
        )
        return done.stdout.splitlines()

    return run


def _field(rnd: random.Random, low: int, high: int) -> str:
    kind = rnd.random()
    if kind < 0.3:
        return "*"
    if kind < 0.45:
        return f"*/{rnd.randint(1, high - low + 1)}"
    if kind < 0.7:
        return ",".join(str(rnd.randint(low, high)) for _ in range(rnd.randint(1, 4)))
    a = rnd.randint(low, high)
    b = rnd.randint(a, high)
    return f"{a}-{b}" + (f"/{rnd.randint(1, 6)}" if rnd.random() < 0.3 else "")


def random_expression(rnd: random.Random) -> str:
    while True:
        dom = _field(rnd, 1, 31) if rnd.random() < 0.25 else "*"
        dow = _field(rnd, 0, 6) if dom == "*" and rnd.random() < 0.3 else "*"
        month = _field(rnd, 1, 12) if rnd.random() < 0.25 else "*"
        # Hours in the small hours hit DST changes most often.
        hour = (
            _field(rnd, 0, 23)
            if rnd.random() < 0.6
            else rnd.choice(["0", "1", "2", "3", "1-3", "0,2"])
        )
        expression = f"{_field(rnd, 0, 59)} {hour} {dom} {month} {dow}"
        try:
            parse_cron(expression)
            return expression
        except CronError:
            continue


def cases(count: int, seed: int):
    rnd = random.Random(seed)
    transitions = {z: _offset_changes(zone(z), START, END) for z in DST_ZONES}
    out = []
    for i in range(count):
        expression = random_expression(rnd)
        if i % 3 == 0:  # on and around a transition
            name = rnd.choice(DST_ZONES)
            start = rnd.choice(transitions[name]) + timedelta(
                seconds=rnd.randint(-30 * 3600, 6 * 3600)
            )
        else:
            name = rnd.choice(DST_ZONES + FIXED_ZONES)
            start = START + timedelta(seconds=rnd.randint(0, int((END - START).total_seconds())))
        out.append((expression, name, start))
    return out


def ours(expression: str, name: str, start: datetime) -> str:
    fires = next_fire_times(parse_cron(expression), name, start, FIRES_PER_CASE)
    return " ".join(str(int(f.timestamp())) for f in fires)


def test_next_fires_match_robfig_cron_on_21000_cases(reference):
    all_cases = cases(21_000, seed=20261125)
    expected = reference(all_cases)
    differences = [
        (case, mine, theirs)
        for case, theirs in zip(all_cases, expected, strict=True)
        if (mine := ours(*case)) != theirs
    ]
    assert differences == [], f"{len(differences)} differences, first: {differences[:3]}"


@pytest.mark.parametrize(
    "expression, name, start",
    [
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC)),  # skipped hour
        ("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC)),  # repeated hour
        (
            "15,45 1 * * *",
            "Australia/Lord_Howe",
            datetime(2026, 4, 4, 12, tzinfo=UTC),
        ),  # 30-minute shift
        ("0 0 * * *", "America/Santiago", datetime(2026, 9, 5, 12, tzinfo=UTC)),  # midnight skipped
        ("0 0 * * *", "Africa/Cairo", datetime(2026, 4, 23, 12, tzinfo=UTC)),  # midnight skipped
        ("*/20 0-3 * * *", "Europe/Berlin", datetime(2026, 10, 24, 20, tzinfo=UTC)),
    ],
)
def test_fixed_transition_cases_match_robfig_cron(reference, expression, name, start):
    (theirs,) = reference([(expression, name, start)])
    assert ours(expression, name, start) == theirs
