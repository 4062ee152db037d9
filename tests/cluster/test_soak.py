"""The short soak: recurring schedules firing every minute for about four minutes while they are
paused, resumed, edited (cron and zone), switched to one-time, deleted, and the operator is
restarted; then an independent accounting (croniter, not wfclock's maths) of every fire against
the ledger and the runs: nothing lost, nothing duplicated, nothing unexpected.
The full soak and the fault scenarios run with `make faults`."""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from wfclock_devstack.accounting import Change, account, describe, dump_history

ZONES = ["UTC", "Asia/Kolkata", "Asia/Tokyo", "Asia/Kathmandu", "America/Sao_Paulo", "Asia/Dubai"]
# Changes happen from :20 to :50 past a minute; a fire's pod is long done by then.
MARGIN = timedelta(seconds=15)


def every_minute(zone: str) -> dict:
    return {"type": "recurring", "cron": "* * * * *", "timezone": zone}


def at_second(second: int, next_minute: bool = True) -> None:
    """Waits for `second` past the next minute boundary (or of this minute)."""
    now = datetime.now(UTC)
    target = now.replace(second=second, microsecond=0)
    if next_minute:
        target = (now + timedelta(minutes=1)).replace(second=second, microsecond=0)
    time.sleep(max(0.0, (target - now).total_seconds()))


def test_short_soak_every_fire_accounted(start_operator, cluster, database_url, tmp_path):
    env = {
        "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "1",
        "WFCLOCK_ACCOUNTING_INTERVAL_SECONDS": "3",
        "WFCLOCK_RESYNC_INTERVAL_SECONDS": "20",
    }
    operator = start_operator(**env)
    histories: dict[uuid.UUID, list[Change]] = {}
    specs: dict[str, dict] = {}

    def apply(name: str, trigger: dict, **spec) -> None:
        body = cluster.apply(name, trigger, startingDeadlineSeconds=60, **spec)
        specs[name] = body["spec"]
        uid = uuid.UUID(body["metadata"]["uid"])
        histories.setdefault(uid, []).append(Change(datetime.now(UTC), body["spec"]))

    def delete(name: str) -> None:
        uid = uuid.UUID(cluster.get(name)["metadata"]["uid"])
        cluster.delete(name)
        histories[uid].append(Change(datetime.now(UTC), None))

    at_second(20)  # minute 0
    for i, zone in enumerate(ZONES):
        apply(f"s{i}", every_minute(zone))
    apply(
        "once",
        {"type": "schedule", "runAt": (datetime.now(UTC) + timedelta(seconds=100)).isoformat()},
    )
    for name in [f"s{i}" for i in range(len(ZONES))] + ["once"]:
        cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled")

    at_second(25)  # minute 1
    apply("s1", every_minute(ZONES[1]), paused=True)
    apply("s2", {**every_minute(ZONES[2]), "cron": "*/2 * * * *"})
    apply("s3", every_minute("Asia/Tokyo"))
    at_second(25)  # minute 2
    apply("s1", every_minute(ZONES[1]))  # resumed
    switch_at = datetime.now(UTC) + timedelta(seconds=60)
    apply("s5", {"type": "schedule", "runAt": switch_at.isoformat()})
    delete("s4")
    at_second(40, next_minute=False)
    operator.stop()  # restarted across the next minute's fires
    at_second(10)  # minute 3, the fire at :00 happened without the operator
    operator = start_operator(**env)
    at_second(30)  # minute 4
    apply("s0", every_minute(ZONES[0]), paused=True)
    end = datetime.now(UTC)

    # Every fire up to `end` has had its Job, and the accounting sweep, time to be recorded.
    time.sleep(45)
    deadline = time.monotonic() + 60
    while not (report := account(database_url, histories, end, MARGIN)).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    sys.__stderr__.write(f"\naccounting: {report.line()}\n")  # past the capture
    if not report.ok:
        sys.__stderr__.write(describe(database_url, report))
    history = tmp_path / "history.json"  # for `python -m wfclock_devstack.accounting`
    history.write_text(dump_history(histories))
    details = (
        f"{report.line()}: {report.lost + report.duplicated + report.unexpected} "
        f"(history in {history}, until {end.isoformat()})"
    )
    assert report.ok, details
    assert report.expected >= 15 and report.launched >= 13, details


# --- the full soak (`make faults`) --------------------------------------------------------------

SOAK_SCHEDULES = int(os.environ.get("WFCLOCK_SOAK_SCHEDULES", "500"))
SOAK_MINUTES = int(os.environ.get("WFCLOCK_SOAK_MINUTES", "30"))
# Zones whose offset does not change in the run (the accounting's croniter and the CronJob
# controller agree there; the parity tests cover DST).
STEADY_ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Asia/Kathmandu",
    "Asia/Dubai",
    "Africa/Nairobi",
]
CRONS = ["* * * * *", "*/2 * * * *", "*/3 * * * *"]


class Soak:
    """The schedules of the soak, what was applied to each and when, and the random stream."""

    def __init__(self, cluster, rng: random.Random):
        self.cluster, self.rng = cluster, rng
        self.histories: dict[uuid.UUID, list[Change]] = {}
        self.live: dict[str, dict] = {}  # name -> spec as applied
        self.uids: dict[str, uuid.UUID] = {}
        self.generations: dict[str, int] = {}
        self.names = itertools.count()
        self.actions: Counter = Counter()

    def apply(self, name: str, trigger: dict, **spec) -> None:
        body = self.cluster.apply(name, trigger, startingDeadlineSeconds=300, **spec)
        uid = uuid.UUID(body["metadata"]["uid"])
        self.live[name], self.uids[name] = body["spec"], uid
        self.generations[name] = body["metadata"]["generation"]
        self.histories.setdefault(uid, []).append(Change(datetime.now(UTC), body["spec"]))

    def delete(self, name: str) -> None:
        self.cluster.delete(name)
        self.histories[self.uids[name]].append(Change(datetime.now(UTC), None))
        del self.live[name]
        self.generations.pop(name, None)

    def run_at(self) -> dict:
        """A one-time trigger at a whole minute 1 to 3 minutes ahead (changes happen between
        :15 and :45, fires at :00)."""
        at = datetime.now(UTC).replace(second=0, microsecond=0)
        at += timedelta(minutes=self.rng.randint(2, 4))
        return {"type": "schedule", "runAt": at.isoformat().replace("+00:00", "Z")}

    def recurring(self) -> dict:
        return {
            "type": "recurring",
            "cron": self.rng.choice(CRONS),
            "timezone": self.rng.choice(STEADY_ZONES),
        }

    def create(self) -> None:
        kind = "recurring" if self.rng.random() < 0.9 else "one-time"
        name = f"{'r' if kind == 'recurring' else 'o'}{next(self.names)}"
        self.apply(name, self.recurring() if kind == "recurring" else self.run_at())
        self.actions[f"create {kind}"] += 1

    def change(self) -> None:
        name = self.rng.choice(sorted(self.live))
        spec = self.live[name]
        trigger = spec["trigger"]
        if trigger["type"] == "schedule":
            due = datetime.fromisoformat(trigger["runAt"].replace("Z", "+00:00"))
            if due < datetime.now(UTC) + timedelta(seconds=20) or self.rng.random() < 0.5:
                self.delete(name)  # done, or dropped before its time
                self.actions["delete one-time"] += 1
                self.create()
            else:
                self.apply(name, self.recurring())
                self.actions["switch to recurring"] += 1
            return
        action = self.rng.choice(["pause", "cron", "zone", "switch", "delete"])
        if spec.get("paused"):
            self.apply(name, trigger)
            self.actions["resume"] += 1
        elif action == "pause":
            self.apply(name, trigger, paused=True)
            self.actions["pause"] += 1
        elif action == "cron":
            cron = self.rng.choice([c for c in CRONS if c != trigger["cron"]])
            self.apply(name, {**trigger, "cron": cron})
            self.actions["cron edit"] += 1
        elif action == "zone":
            zone = self.rng.choice([z for z in STEADY_ZONES if z != trigger["timezone"]])
            self.apply(name, {**trigger, "timezone": zone})
            self.actions["zone edit"] += 1
        elif action == "switch":
            self.apply(name, self.run_at())
            self.actions["switch to one-time"] += 1
        else:
            self.delete(name)
            self.actions["delete"] += 1
            self.create()

    def observed(self, deadline: datetime) -> int:
        """Waits (until `deadline`) for the operator to have seen every applied generation;
        returns how many it had not."""
        behind = dict(self.generations)
        while behind and datetime.now(UTC) < deadline:
            for item in self.cluster.list():
                name = item["metadata"]["name"]
                seen = (item.get("status") or {}).get("observedGeneration") or 0
                if name in behind and seen >= behind[name]:
                    del behind[name]
            time.sleep(1)
        return len(behind)


@pytest.mark.faults
@pytest.mark.timeout(SOAK_MINUTES * 60 + 3600)
def test_soak_every_fire_accounted(start_operator, cluster, database_url, tmp_path):
    """SOAK_SCHEDULES recurring schedules (WFCLOCK_SOAK_SCHEDULES, 500) fire every one to three
    minutes for SOAK_MINUTES (WFCLOCK_SOAK_MINUTES, 30) while a random stream (seed printed,
    WFCLOCK_SOAK_SEED to replay) pauses, resumes, edits cron and zone, switches type, deletes
    and adds one-time schedules; the accounting then checks every fire."""
    seed = int(os.environ.get("WFCLOCK_SOAK_SEED", str(time.time_ns() % 10**6)))
    sys.__stderr__.write(
        f"\nsoak: {SOAK_SCHEDULES} schedules, {SOAK_MINUTES} minutes, seed {seed}\n"
    )
    start_operator(
        WFCLOCK_MINIMUM_INTERVAL_MINUTES="1",
        WFCLOCK_ACCOUNTING_INTERVAL_SECONDS="15",
        WFCLOCK_RESYNC_INTERVAL_SECONDS="120",
    )
    soak = Soak(cluster, random.Random(seed))
    changes_per_minute = max(3, SOAK_SCHEDULES // 25)
    started = datetime.now(UTC)
    lagging = 0
    while datetime.now(UTC) - started < timedelta(minutes=SOAK_MINUTES):
        at_second(15, next_minute=datetime.now(UTC).second > 15)
        window_end = datetime.now(UTC).replace(second=45)
        created = sum(v for k, v in soak.actions.items() if k.startswith("create"))
        if created < SOAK_SCHEDULES:
            while created < SOAK_SCHEDULES and datetime.now(UTC) < window_end:
                name = f"r{next(soak.names)}"
                soak.apply(name, {**soak.recurring(), "cron": "* * * * *"})
                soak.actions["create recurring"] += 1
                created += 1
        else:
            for _ in range(changes_per_minute):
                if datetime.now(UTC) >= window_end:
                    break
                soak.change()
        lagging += soak.observed(window_end.replace(second=55))
    end = datetime.now(UTC)
    sys.__stderr__.write(f"soak: {dict(soak.actions)}; changes not seen before :55: {lagging}\n")

    time.sleep(90)
    deadline = time.monotonic() + 900
    while not (report := account(database_url, soak.histories, end, MARGIN)).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(10)
    history = tmp_path / "history.json"
    history.write_text(dump_history(soak.histories))
    sys.__stderr__.write(
        f"accounting: soak {SOAK_SCHEDULES} schedules x {SOAK_MINUTES} min: {report.line()} "
        f"(history {history}, until {end.isoformat()})\n"
    )
    if not report.ok:
        sys.__stderr__.write(describe(database_url, report))
    assert report.ok, (
        f"{report.line()}: {(report.lost + report.duplicated + report.unexpected)[:20]}"
    )
    assert report.launched >= SOAK_SCHEDULES * SOAK_MINUTES // 4, report.line()
