"""The independent accounting used by the soak and the fault scenarios finds what it must: a
lost fire, a duplicated one, a run that no fire owed; and accepts skips with their reasons."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from wfclock_devstack.accounting import Change, account, describe, expected_fires

T0 = datetime(2026, 11, 25, 10, 0, 30, tzinfo=UTC)
EVERY_MINUTE = {"trigger": {"type": "recurring", "cron": "* * * * *", "timezone": "Asia/Kolkata"}}


def test_expected_fires_follow_pauses_edits_and_deletes():
    history = [
        Change(T0, EVERY_MINUTE),  # 10:01, 10:02
        Change(T0 + timedelta(minutes=2), {**EVERY_MINUTE, "paused": True}),  # none
        Change(T0 + timedelta(minutes=4), EVERY_MINUTE),  # 10:05 (10:06 is near the delete)
        Change(T0 + timedelta(minutes=6, seconds=10), None),
    ]
    certain, boundary = expected_fires(history, T0 + timedelta(hours=1), timedelta(seconds=60))
    minutes = sorted(f.minute for f in certain)
    assert minutes == [1, 5] and sorted(f.minute for f in boundary) == [2, 6]


def test_a_fire_in_the_second_of_the_creation_may_run():
    """Created at 10:00:00.4, the API server's creationTimestamp says 10:00:00, and wfclock owes
    the fire at it: the fault run counted that run unexpected (five schedules created in the
    same second of a minute)."""
    created = datetime(2026, 11, 25, 10, 0, 0, 400000, tzinfo=UTC)
    certain, boundary = expected_fires(
        [Change(created, EVERY_MINUTE)], created + timedelta(minutes=2), timedelta(seconds=60)
    )
    assert sorted(f.minute for f in certain) == [1, 2]
    assert boundary == {created.replace(microsecond=0)}
    late = created.replace(second=1)  # a second later: the 10:00 fire is before the creation
    certain, boundary = expected_fires(
        [Change(late, EVERY_MINUTE)], late + timedelta(minutes=2), timedelta(seconds=60)
    )
    assert boundary == set() and min(certain).minute == 1


def insert_fire(conn, schedule_id, at, outcome="launched", reason=None, runs=1):
    for n in range(runs if outcome == "launched" else 0):
        conn.execute(
            "INSERT INTO workflow_runs (run_id, tenant, workflow_id, workflow_version, payload, "
            "trigger_type, trigger_fire_key, schedule_id) VALUES (%s, 'acme', %s, 1, %s, "
            "'recurring', %s, %s)",
            (uuid.uuid4(), uuid.uuid4(), json.dumps({"scheduledFor": f"{at:%Y-%m-%dT%H:%M:%SZ}"}),
             f"k{n}-{at}", schedule_id),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome, "
        "reason) VALUES (%s, %s, %s, %s, %s)",
        (f"key-{schedule_id}-{at}", schedule_id, at, outcome, reason),
    )


def test_the_accounting_reports_lost_duplicated_and_unexpected_fires(conn, database_url):
    sid = uuid.uuid4()
    history = {sid: [Change(T0, EVERY_MINUTE)]}
    until = T0 + timedelta(minutes=4)  # 10:04:30, owes 10:01 ... 10:04
    minute = T0.replace(second=0)
    insert_fire(conn, sid, minute + timedelta(minutes=1))
    insert_fire(conn, sid, minute + timedelta(minutes=2), "skipped", "paused: while paused")
    insert_fire(conn, sid, minute + timedelta(minutes=3), runs=2)  # two runs for one fire
    conn.commit()  # 10:04 has no record at all
    report = account(database_url, history, until)
    assert report.line() == (
        "expected 4, launched 2, skipped 1 (paused 1), lost 1, duplicated 1, unexpected 0"
    )
    insert_fire(conn, sid, minute + timedelta(minutes=4))
    insert_fire(conn, sid, minute - timedelta(minutes=5))  # before the schedule existed
    conn.commit()
    report = account(database_url, history, until)
    assert (len(report.lost), len(report.unexpected), report.ok) == (0, 1, False)


def test_overlap_skips_and_buffered_fires_are_accounted_and_run_now_runs_are_never_unexpected(
    conn, database_url
):
    sid = uuid.uuid4()
    history = {sid: [Change(T0, EVERY_MINUTE)]}
    minute = T0.replace(second=0)
    insert_fire(conn, sid, minute + timedelta(minutes=1))
    insert_fire(conn, sid, minute + timedelta(minutes=2), "skipped", "overlap: run x is running")
    insert_fire(conn, sid, minute + timedelta(minutes=3), "buffered", "overlap: waits for run x")
    # A run-now request between two fires: its ledger row and its manual run.
    manual_at = minute + timedelta(minutes=1, seconds=30)
    conn.execute(
        "INSERT INTO workflow_runs (run_id, tenant, workflow_id, workflow_version, payload, "
        "trigger_type, trigger_fire_key, schedule_id) VALUES (%s, 'acme', %s, 1, %s, 'manual', "
        "'manual-key', %s)",
        (uuid.uuid4(), uuid.uuid4(), json.dumps({"scheduledFor": f"{manual_at:%Y-%m-%dT%H:%M:%SZ}"}),
         sid),
    )  # fmt: skip
    conn.execute(
        "INSERT INTO workflow_schedule_fires (fire_key, schedule_id, scheduled_for, outcome, kind) "
        "VALUES ('manual-key', %s, %s, 'launched', 'manual')",
        (sid, manual_at),
    )
    conn.commit()
    report = account(database_url, history, T0 + timedelta(minutes=3))
    assert report.line() == (
        "expected 3, launched 1, buffered 1, skipped 1 (overlap 1), lost 0, duplicated 0, "
        "unexpected 0"
    )
    assert report.ok


def test_a_fire_recorded_at_an_edit_or_delete_counts_with_its_reason_and_one_without_is_lost(
    conn, database_url
):
    sid = uuid.uuid4()
    minute = T0.replace(second=0)
    # Due at 10:01 ... 10:04 under the first spec, deleted at 10:05:10.
    history = {sid: [Change(T0, EVERY_MINUTE), Change(T0 + timedelta(minutes=4, seconds=40), None)]}
    insert_fire(conn, sid, minute + timedelta(minutes=1), "skipped", "deleted")
    reason = "superseded: scheduled before the trigger's last change"
    insert_fire(conn, sid, minute + timedelta(minutes=2), "skipped", reason)
    insert_fire(conn, sid, minute + timedelta(minutes=3), "skipped", None)  # says nothing
    insert_fire(conn, sid, minute + timedelta(minutes=4), "skipped", "whatever")
    conn.commit()
    report = account(database_url, history, T0 + timedelta(hours=1), timedelta(seconds=15))
    assert report.line() == (
        "expected 4, launched 0, skipped 2 (deleted 1, superseded 1), lost 2, duplicated 0, "
        "unexpected 0"
    )
    assert "without a reason" in report.lost[0] and not report.ok


def test_describe_prints_the_ledger_and_runs_of_each_wrong_fire(conn, database_url):
    sid = uuid.uuid4()
    minute = T0.replace(second=0)
    insert_fire(conn, sid, minute + timedelta(minutes=1), runs=2)  # duplicated
    conn.commit()  # 10:02 lost: nothing recorded
    report = account(database_url, {sid: [Change(T0, EVERY_MINUTE)]}, T0 + timedelta(minutes=2))
    text = describe(database_url, report)
    lost, duplicated = text.split(f"{sid} 2026-11-25T10:01:00Z")  # lost ones come first
    assert lost.startswith(f"{sid} 2026-11-25T10:02:00Z:")
    assert duplicated.count("  run (") == 2 and duplicated.count("  fire (") == 1
    assert "  run (" not in lost and "  fire (" not in lost
    assert describe(database_url, report, limit=1).count("  schedule ") == 1
