"""What a schedule's calendars and bounds cost a fire: fires per second of a schedule with two
calendars (a year of holidays each, no fire on an excluded date), an active window and a large
maxFires, against the same schedule without them, measured in the same run on the same database.

Every fire is launched either way, so the figures compare only the decision that migration 0007
adds under the row lock (`wfclock_policy_refusal`: the window, the launch count, one date
lookup per calendar).
Usage: python bench/calendar_policy.py [FIRES]
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta

import psycopg
from _support import EPOCH, database, every_minute_schedule
from wfclock.core.calendars import derive_calendar, validate_calendar
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch

REGISTRATION = Registration("* * * * *", "Europe/Berlin")
ROUND = 100  # fires per kind and round; rounds alternate, so drift hits both alike
KINDS = ("plain", "calendars+bounds")


def with_policy(url: str, schedule_id) -> None:
    engine = store.engine_for(url)
    for name, country in (("holidays-de", "DE"), ("holidays-us", "US")):
        spec = validate_calendar({"holidays": {"country": country}, "businessDaysOnly": False})
        derived = derive_calendar(spec, EPOCH.date())
        # Keep the bench's instants runnable: no excluded date on the days it fires.
        days = {EPOCH.date() + timedelta(days=d) for d in range(-1, 8)} | {
            (EPOCH + timedelta(days=100)).date()
        }
        excluded = {d: r for d, r in derived.excluded.items() if d not in days}
        horizon = (date(EPOCH.year - 1, 1, 1), date(EPOCH.year + 1, 12, 31))
        derived = type(derived)(*horizon, excluded, False, derived.holidays_version)
        store.write_calendar(engine, "bench", name, derived)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workflow_schedules SET namespace = 'bench', "
            "calendars = '{holidays-de,holidays-us}', active_from = %s, active_until = %s, "
            "max_fires = 1000000 WHERE schedule_id = %s",
            (EPOCH - timedelta(days=365), EPOCH + timedelta(days=365), schedule_id),
        )


def fire_round(conn, schedule_id, instants) -> float:
    now = instants[-1] + timedelta(minutes=1)
    start = time.perf_counter()
    for at in instants:
        result = launch(conn, ClockFire(schedule_id, at, "bench", REGISTRATION), now=now)
        assert result.outcome == "launched", result
    return time.perf_counter() - start


def main(fires: int) -> None:
    rounds = max(1, fires // ROUND)
    spent = dict.fromkeys(KINDS, 0.0)
    with database() as url:
        schedules = {kind: every_minute_schedule(url) for kind in KINDS}
        with_policy(url, schedules["calendars+bounds"])
        with psycopg.connect(url, autocommit=True) as conn:
            warm = [EPOCH + timedelta(days=100, minutes=i) for i in range(ROUND)]
            fire_round(conn, every_minute_schedule(url), warm)
            for n in range(rounds):
                instants = [EPOCH + timedelta(minutes=n * ROUND + i) for i in range(ROUND)]
                for kind in KINDS:
                    spent[kind] += fire_round(conn, schedules[kind], instants)
    total = rounds * ROUND
    print(f"fires per kind: {total} in {rounds} alternating rounds")
    for kind in KINDS:
        rate = total / spent[kind]
        print(f"{kind:17} {rate:,.0f} fires/s  ratio to plain {spent['plain'] / spent[kind]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
