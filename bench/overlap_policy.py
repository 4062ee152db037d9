"""What an overlap policy costs a fire: fires per second with Skip and BufferOne against Allow
(the behaviour without a policy), measured in the same run on the same database.

Each fire's run is finished by a worker (`UPDATE workflow_runs SET status = 'succeeded'`) before
the next fire, as in a schedule whose runs do not overlap: every fire is launched under every
policy, so the figures compare only the decision (Allow reads no runs; Skip and BufferOne look for
an unfinished run, and each finish passes the trigger that would release a buffered fire).
Usage: python bench/overlap_policy.py [FIRES]
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import psycopg
from _support import EPOCH, database, every_minute_schedule
from wfclock.launcher import ClockFire, Registration, launch

REGISTRATION = Registration("* * * * *", "Europe/Berlin")


POLICIES = ("Allow", "Skip", "BufferOne")
ROUND = 100  # fires per policy and round; rounds alternate, so drift hits every policy alike


def schedule_with(url: str, policy: str):
    schedule_id = every_minute_schedule(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workflow_schedules SET overlap_policy = %s WHERE schedule_id = %s",
            (policy, schedule_id),
        )
    return schedule_id


def fire_round(conn, schedule_id, instants) -> float:
    now = instants[-1] + timedelta(minutes=1)
    start = time.perf_counter()
    for at in instants:
        result = launch(conn, ClockFire(schedule_id, at, "bench", REGISTRATION), now=now)
        assert result.outcome == "launched", result
        conn.execute(
            "UPDATE workflow_runs SET status = 'succeeded' WHERE run_id = %s", (result.run_id,)
        )
    return time.perf_counter() - start


def main(fires: int) -> None:
    rounds = max(1, fires // ROUND)
    spent = dict.fromkeys(POLICIES, 0.0)
    with database() as url:
        schedules = {policy: schedule_with(url, policy) for policy in POLICIES}
        with psycopg.connect(url, autocommit=True) as conn:
            warm = [EPOCH + timedelta(days=100, minutes=i) for i in range(ROUND)]
            fire_round(conn, schedule_with(url, "Allow"), warm)
            for n in range(rounds):
                instants = [EPOCH + timedelta(minutes=n * ROUND + i) for i in range(ROUND)]
                for policy in POLICIES:
                    spent[policy] += fire_round(conn, schedules[policy], instants)
    total = rounds * ROUND
    print(f"fires per policy: {total} in {rounds} alternating rounds (each run finished first)")
    for policy in POLICIES:
        rate = total / spent[policy]
        print(
            f"{policy:10} {rate:,.0f} fires/s  ratio to Allow {spent['Allow'] / spent[policy]:.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
