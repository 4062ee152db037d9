"""The short soak: recurring schedules firing every minute for about four minutes while they are
paused, resumed, edited (cron and zone), switched to one-time, deleted, and the operator is
restarted; then an independent accounting (croniter, not wfclock's maths) of every fire against
the ledger and the runs: nothing lost, nothing duplicated, nothing unexpected.
The full soak and the fault scenarios run with `make faults`."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from wfclock_devstack.accounting import Change, account, dump_history

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
    history = tmp_path / "history.json"  # for `python -m wfclock_devstack.accounting`
    history.write_text(dump_history(histories))
    details = (
        f"{report.line()}: {report.lost + report.duplicated + report.unexpected} "
        f"(history in {history}, until {end.isoformat()})"
    )
    assert report.ok, details
    assert report.expected >= 15 and report.launched >= 13, details
