"""An independent accounting of fires, for the soak and the fault scenarios.

Given what was applied to each schedule and when (its history), it computes every fire that
should have happened, with croniter (not wfclock's own fire-time maths), and compares them with
the ledger (`workflow_schedule_fires`) and the runs (`workflow_runs`): each expected fire is
exactly one ledger record, launched with exactly one run, skipped with one of the `REASONS`
(`overlap` among them; a record without one counts as lost), or buffered (waiting for the schedule's running run: owed a run later, by the same
key, and not lost); no run belongs to a fire that was not expected. Run-now requests (ledger kind
`manual`, runs of trigger type `manual`) are no fires of the trigger: never expected, never
unexpected. Fires within `margin` before a change (an edit, a pause,
a delete) may go either way (the change may reach the launcher first) and are only checked for
duplicates; so may a fire in the second of the first change, which the API server records to the
second (wfclock owes the fire at a schedule's creationTimestamp). croniter's daylight-saving
rules differ from the CronJob controller's, so histories use zones whose offset does not change
during the run (the parity tests cover DST).

    python -m wfclock_devstack.accounting --database-url URL --history FILE --until T

prints `expected N, launched L, skipped S (by reason), lost 0, duplicated 0, unexpected 0` and
exits 1 when anything was lost, duplicated or unexpected.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter


@dataclass(frozen=True)
class Change:
    """What a schedule's spec became at `at` (None: deleted)."""

    at: datetime
    spec: dict | None


def _fires_in(spec: dict, start: datetime, end: datetime) -> list[datetime]:
    """The fires of `spec` in (start, end], as UTC instants; none while paused."""
    if spec.get("paused"):
        return []
    trigger = spec["trigger"]
    if trigger["type"] == "schedule":
        run_at = datetime.fromisoformat(trigger["runAt"].replace("Z", "+00:00")).astimezone(UTC)
        run_at = run_at.replace(
            microsecond=run_at.microsecond // 1000 * 1000
        )  # as wfclock keeps it
        return [run_at] if start < run_at <= end else []
    zone = ZoneInfo(trigger["timezone"])
    cursor = croniter(trigger["cron"], start.astimezone(zone))
    fires = []
    while (fire := cursor.get_next(datetime).astimezone(UTC)) <= end:
        fires.append(fire)
    return fires


def expected_fires(
    history: list[Change], until: datetime, margin: timedelta
) -> tuple[set[datetime], set[datetime]]:
    """(certain, boundary): the fires the history owes up to `until`, and those within `margin`
    before a change, which may go either way."""
    certain: set[datetime] = set()
    boundary: set[datetime] = set()
    for change, following in zip(history, [*history[1:], None], strict=True):
        if change.spec is None:
            break
        if change is history[0]:
            # The API server records a creation to the second, and wfclock owes the fire at its
            # creationTimestamp: one in the same second before the recorded `at` may run.
            boundary.update(_fires_in(change.spec, change.at - timedelta(seconds=1), change.at))
        end = following.at if following else until
        for fire in _fires_in(change.spec, change.at, min(end, until)):
            (boundary if following and end - fire <= margin else certain).add(fire)
    return certain, boundary - certain


@dataclass
class Report:
    expected: int = 0
    launched: int = 0
    buffered: int = 0
    skipped: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def line(self) -> str:
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        return (
            f"expected {self.expected}, launched {self.launched}, "
            + (f"buffered {self.buffered}, " if self.buffered else "")
            + "skipped "
            f"{sum(self.skipped.values())}"
            + (f" ({by_reason})" if by_reason else "")
            + f", lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"unexpected {len(self.unexpected)}"
        )


# What a ledger record without a run may say (its reason's first word): a schedule paused,
# invalid, disabled or deleted, a fire superseded by a change of the trigger (also one due
# before an edit, a type switch or a delete whose Job had not delivered it: the operator records
# it then), a one-time schedule already completed, an overlap, a miss beyond the deadline, a
# calendar's excluded date or a bound of the schedule (activeFrom, activeUntil, maxFires). A
# record without one of these explains nothing and counts as lost.
REASONS = (
    "paused",
    "superseded",
    "deleted",
    "disabled",
    "invalid",
    "completed",
    "overlap",
    "missed",
    # The schedule's own policy (migration 0007) and the daylight-saving policy, L (0008): a calendar's excluded date, its bounds.
    "calendar",
    "before-active-from",
    "after-active-until",
    "max-fires-reached",
    "dst-policy",
    "not-last-day-of-month",
)


def _reason_kind(reason: str | None) -> str:
    kind = (reason or "").split(":")[0].split(" ")[0]
    return kind if kind in REASONS else ""


def account(
    database_url: str,
    histories: dict[uuid.UUID, list[Change]],
    until: datetime,
    margin: timedelta = timedelta(seconds=90),
) -> Report:
    """Compares the ledger and the runs with the fires the histories owe up to `until`."""
    report = Report()
    with psycopg.connect(database_url) as conn:
        for schedule_id, history in histories.items():
            certain, boundary = expected_fires(history, until, margin)
            ledger = {
                at: (outcome, reason)
                for at, outcome, reason in conn.execute(
                    "SELECT scheduled_for, outcome, reason FROM workflow_schedule_fires "
                    "WHERE schedule_id = %s AND scheduled_for <= %s AND kind = 'clock'",
                    (schedule_id, until),
                )
            }
            runs = Counter(
                datetime.fromisoformat(at.replace("Z", "+00:00"))
                for (at,) in conn.execute(
                    "SELECT payload->>'scheduledFor' FROM workflow_runs "
                    "WHERE schedule_id = %s AND trigger_type <> 'manual'",
                    (schedule_id,),
                )
            )
            report.expected += len(certain)
            for fire in sorted(certain | boundary):
                name = f"{schedule_id} {fire:%Y-%m-%dT%H:%M:%SZ}"
                if runs[fire] > 1:
                    report.duplicated.append(name)
                if fire not in certain:
                    continue
                if fire not in ledger:
                    report.lost.append(name)
                elif ledger[fire][0] == "launched":
                    report.launched += 1
                    if runs[fire] == 0:
                        report.lost.append(f"{name} (launched, but no run)")
                elif ledger[fire][0] == "buffered":
                    report.buffered += 1
                    if runs[fire]:
                        report.duplicated.append(f"{name} (buffered, yet it has a run)")
                elif kind := _reason_kind(ledger[fire][1]):
                    report.skipped[kind] += 1
                else:
                    report.lost.append(
                        f"{name} ({ledger[fire][0]} without a reason: {ledger[fire][1]!r})"
                    )
            for fire, count in runs.items():
                if fire <= until and fire not in certain and fire not in boundary:
                    report.unexpected.append(f"{schedule_id} {fire:%Y-%m-%dT%H:%M:%SZ} x{count}")
    return report


def describe(database_url: str, report: Report, limit: int = 20) -> str:
    """What the ledger and the runs hold for each fire the accounting found wrong (the first
    `limit`): enough to tell a bug from the harness's mistake after the test's database is gone."""
    lines = []
    with psycopg.connect(database_url) as conn:
        for item in (report.lost + report.duplicated + report.unexpected)[:limit]:
            uid, at = item.split()[:2]
            lines.append(f"{item}:")
            for row in conn.execute(
                "SELECT kind, outcome, reason, source, first_delivered_at, run_id"
                " FROM workflow_schedule_fires WHERE schedule_id = %s AND scheduled_for = %s",
                (uid, at),
            ):
                lines.append(f"  fire {row}")
            for row in conn.execute(
                "SELECT run_id, trigger_type, created_at, payload FROM workflow_runs"
                " WHERE schedule_id = %s AND payload->>'scheduledFor' = %s",
                (uid, at),
            ):
                lines.append(f"  run {row}")
            schedule = conn.execute(
                "SELECT cron, timezone, missed_fires, trigger_effective_from, accounted_until,"
                " created_at FROM workflow_schedules WHERE schedule_id = %s",
                (uid,),
            ).fetchone()
            lines.append(f"  schedule {schedule}")
    return "\n".join(lines) + "\n"


def dump_history(histories: dict[uuid.UUID, list[Change]]) -> str:
    return json.dumps(
        {
            str(uid): [{"at": c.at.isoformat(), "spec": c.spec} for c in changes]
            for uid, changes in histories.items()
        },
        indent=1,
    )


def load_history(path: str) -> dict[uuid.UUID, list[Change]]:
    """`{"<schedule uid>": [{"at": "<RFC 3339>", "spec": {...} | null}, ...]}`."""
    raw = json.loads(open(path).read())  # noqa: SIM115 - a small file read once
    return {
        uuid.UUID(uid): [
            Change(datetime.fromisoformat(c["at"].replace("Z", "+00:00")), c["spec"])
            for c in changes
        ]
        for uid, changes in raw.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfclock_devstack.accounting")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--history", required=True, help="JSON: uid -> [{at, spec}]")
    parser.add_argument("--until", required=True, help="RFC 3339: fires up to this instant")
    args = parser.parse_args(argv)
    until = datetime.fromisoformat(args.until.replace("Z", "+00:00"))
    report = account(args.database_url, load_history(args.history), until)
    print(report.line())
    for kind in ("lost", "duplicated", "unexpected"):
        for item in getattr(report, kind):
            print(f"{kind}: {item}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
