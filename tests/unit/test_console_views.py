"""The console's view models: what each page shows, from fixed objects and a fixed clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from wfclock.console import views
from wfclock.console.sessions import Sessions

NOW = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)  # Europe's spring-forward is Sunday 2026-03-29


def wfs(name, trigger, namespace="acme", paused=False, status=None, annotations=None, **spec):
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "annotations": annotations or {},
        },
        "spec": {"tenant": namespace, "trigger": trigger, "paused": paused, **spec},
        "status": status or {},
    }


BERLIN_0230 = {"type": "recurring", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}


def test_countdown_reads_coarsely_ahead_and_behind():
    assert views.countdown(0) == "now"
    assert views.countdown(42) == "in 42 s"
    assert views.countdown(5 * 60 + 59) == "in 5 min"
    assert views.countdown(3 * 3600 + 12 * 60) == "in 3 h 12 min"
    assert views.countdown(2 * 86400 + 3 * 3600 + 5) == "in 2 d 3 h"
    assert views.countdown(-180) == "3 min ago"


def test_cron_in_words_uses_the_24_hour_clock_and_never_fails():
    assert views.cron_in_words("15 9 * * 1-5") == "At 09:15, Monday through Friday"
    assert views.cron_in_words("*/15 * * * *") == "Every 15 minutes"
    assert views.cron_in_words("not a cron") == "(no description)"


def test_a_time_in_a_zone_shows_the_zone_and_its_offset():
    at = datetime(2026, 7, 1, 7, 15, tzinfo=UTC)
    assert views.in_zone(at, "America/New_York") == "2026-07-01 03:15 EDT (-04:00)"
    assert views.in_zone(at, "Asia/Kolkata") == "2026-07-01 12:45 IST (+05:30)"
    assert views.in_zone(None, "UTC") == "-"


def test_a_schedule_row_has_next_fire_in_its_zone_with_countdown_last_fire_and_outcome():
    obj = wfs(
        "report",
        {"type": "recurring", "cron": "15 9 * * 1-5", "timezone": "America/New_York"},
        status={"phase": "Scheduled", "nextFireAt": "2026-03-25T13:15:00Z"},
    )
    ledger = {
        "last_fire_at": datetime(2026, 3, 24, 13, 15, tzinfo=UTC),
        "last_run_status": "queued",
    }
    row = views.schedule_row(obj, ledger, NOW)
    assert row["words"] == "At 09:15, Monday through Friday"
    assert row["next_fire_zone"] == "2026-03-25 09:15 EDT (-04:00)"
    assert row["countdown"] == "in 1 h 15 min"
    assert row["last_fire_zone"] == "2026-03-24 09:15 EDT (-04:00)"
    assert row["last_outcome"] == "queued"
    assert row["last_success_at"] == ""
    obj["status"]["lastSuccessfulFireAt"] = "2026-03-23T13:15:00Z"
    row = views.schedule_row(obj, ledger, NOW)
    assert row["last_success_zone"] == "2026-03-23 09:15 EDT (-04:00)"
    assert (row["phase"], row["type_label"], row["paused"]) == ("Scheduled", "Recurring", False)


def test_a_schedule_without_status_yet_is_pending_and_an_unknown_zone_shows_in_utc():
    row = views.schedule_row(
        wfs("new", {"type": "recurring", "cron": "0 * * * *", "timezone": "Mars/Olympus"}),
        None,
        NOW,
    )
    assert (row["phase"], row["timezone"], row["next_fire_zone"]) == ("Pending", "UTC", "-")


def test_the_pause_reason_comes_from_status_then_spec_then_the_consoles_annotation():
    annotation = {"wfclock.dev/pause-reason": "from the annotation"}
    obj = wfs("p", BERLIN_0230, paused=True, annotations=annotation)
    assert views.pause_reason(obj) == "from the annotation"
    obj["spec"]["pauseReason"] = "from the spec"
    assert views.pause_reason(obj) == "from the spec"
    obj["status"]["pauseReason"] = "from the status"
    assert views.pause_reason(obj) == "from the status"


def test_filters_keep_rows_matching_every_given_field():
    rows = [
        {"namespace": "a", "tenant": "acme", "type": "recurring", "phase": "Scheduled"},
        {"namespace": "a", "tenant": "acme", "type": "schedule", "phase": "Paused"},
        {"namespace": "b", "tenant": "globex", "type": "recurring", "phase": "Paused"},
    ]
    assert views.filter_rows(rows, namespace="a", phase="") == rows[:2]
    assert views.filter_rows(rows, type="recurring", phase="Paused") == [rows[2]]
    assert views.choices(rows, "phase") == ["Paused", "Scheduled"]


def test_recent_fires_prefer_the_status_and_fall_back_to_the_ledger_newest_first():
    ledger = [
        {
            "scheduled_for": NOW - timedelta(hours=h),
            "first_delivered_at": NOW - timedelta(hours=h) + timedelta(seconds=2),
            "outcome": "launched" if h else "skipped",
            "reason": None if h else "paused",
            "run_id": uuid.UUID(int=h) if h else None,
        }
        for h in (2, 0, 1)
    ]
    fires = views.recent_fires(wfs("r", BERLIN_0230), ledger)
    assert [f["scheduled_for"] for f in fires] == [
        "2026-03-25T12:00:00Z",
        "2026-03-25T11:00:00Z",
        "2026-03-25T10:00:00Z",
    ]
    assert fires[0] == {
        "scheduled_for": "2026-03-25T12:00:00Z",
        "started_at": "2026-03-25T12:00:02Z",
        "outcome": "skipped",
        "reason": "paused",
        "run_id": "",
    }
    status = {"recentFires": [{"scheduledFor": "2026-03-25T11:00:00Z", "outcome": "launched"}]}
    from_status = views.recent_fires(wfs("r", BERLIN_0230, status=status), ledger)
    assert [f["scheduled_for"] for f in from_status] == ["2026-03-25T11:00:00Z"]


def test_next_fires_are_computed_with_dst_notes_when_the_status_has_none():
    kubernetes = {**BERLIN_0230, "dstPolicy": "Kubernetes"}
    fires = views.next_fires(wfs("b", kubernetes), NOW, count=5)
    # 2026-03-29 02:30 does not exist in Berlin: under dstPolicy Kubernetes (robfig/cron) that
    # day's fire is skipped.
    assert [f["at"] for f in fires][:4] == [
        "2026-03-26T01:30:00Z",
        "2026-03-27T01:30:00Z",
        "2026-03-28T01:30:00Z",
        "2026-03-30T00:30:00Z",
    ]
    assert views.next_fires(wfs("b", BERLIN_0230, paused=True), NOW) == []


def test_next_fires_follow_the_default_dst_policy_and_mark_the_shifted_fire():
    # Auto (the default): a fixed-time job runs right after the gap, at 03:00 CEST.
    fires = views.next_fires(wfs("b", BERLIN_0230), NOW, count=5)
    assert [f["at"] for f in fires][:5] == [
        "2026-03-26T01:30:00Z",
        "2026-03-27T01:30:00Z",
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]
    assert [f["shifted"] for f in fires] == [False, False, False, True, False]
    assert "runs after a DST gap (dstPolicy Auto)" in fires[3]["note"]


def test_the_timeline_places_seven_days_of_fires_with_dst_shifts_and_the_busiest_minutes():
    objs = [
        wfs("berlin", BERLIN_0230),
        wfs("utc-half-hour", {"type": "recurring", "cron": "30 * * * *", "timezone": "UTC"}),
        wfs("once", {"type": "schedule", "runAt": "2026-03-27T01:30:00Z"}),
        wfs("later", {"type": "schedule", "runAt": "2026-04-09T00:00:00Z"}),
    ]
    line = views.timeline(objs, NOW)
    lanes = {lane["name"]: lane for lane in line["lanes"]}
    # Seven days; on the spring-forward day the default policy (Auto) runs 02:30 at 03:00 CEST.
    assert len(lanes["berlin"]["fires"]) == 7
    (shifted,) = [f for f in lanes["berlin"]["fires"] if f["shifted"]]
    assert shifted["at"] == "2026-03-29T01:00:00Z" and "DST gap" in shifted["note"]
    assert lanes["berlin"]["excluded"] == [] and line["excluded"] == []
    assert len(lanes["utc-half-hour"]["fires"]) == 7 * 24
    assert [f["at"] for f in lanes["once"]["fires"]] == ["2026-03-27T01:30:00Z"]
    assert lanes["later"]["fires"] == []
    assert [s["text"] for s in line["shifts"]] == [
        "Europe/Berlin: clocks go forward (2026-03-29 03:00 CEST (+02:00))"
    ]
    assert line["shifts"][0]["at"] == "2026-03-29T01:00:00Z"
    # Before the change Berlin's 02:30 is 01:30 UTC, as is the hourly :30: two fires start
    # together on three days, and three on the day of the one-time fire; after it, 02:30 CEST
    # is 00:30 UTC, still on the hourly's :30 (three more days).
    assert line["busiest"] == [{"at": "2026-03-27T01:30:00Z", "fires": 3}]
    assert line["overlaps"] == 6
    busy = [f["at"] for f in lanes["berlin"]["fires"] if f["busy"]]
    assert busy == ["2026-03-27T01:30:00Z"]
    assert lanes["berlin"]["fires"][0]["left"] == round(100 * (13.5 / 168), 3)
    assert line["peak_hour_fires"] == 3
    assert [d["label"] for d in line["days"]][:2] == ["Wed 25 Mar", "Thu 26 Mar"]


def test_a_schedule_firing_every_minute_is_cut_on_the_timeline_and_says_so():
    line = views.timeline(
        [wfs("m", {"type": "recurring", "cron": "* * * * *", "timezone": "UTC"})], NOW
    )
    (lane,) = line["lanes"]
    assert len(lane["fires"]) == views.TIMELINE_FIRES_PER_SCHEDULE and lane["more"]


def test_runs_carry_their_real_trigger_label_provenance_and_payload():
    base = {
        "run_id": uuid.UUID(int=1),
        "tenant": "acme",
        "workflow_id": uuid.UUID(int=2),
        "workflow_version": 3,
        "status": "queued",
        "created_at": NOW,
    }
    event = views.run_row(
        {
            **base,
            "trigger_type": "event",
            "trigger_metadata": {"eventName": "invoice.paid"},
            "payload": {"a": 1},
        }
    )
    assert event["trigger_label"] == "Event: invoice.paid"
    assert event["payload"] == '{\n  "a": 1\n}'
    clock = views.run_row(
        {
            **base,
            "trigger_type": "recurring",
            "trigger_metadata": {"scheduleId": "s"},
            "payload": {"scheduledFor": "2026-03-25T11:00:00Z"},
            "trigger_fire_key": "workflow-schedule-fire:s:2026-03-25T11:00:00Z",
            "schedule_name": "nightly",
            "schedule_namespace": "acme",
        }
    )
    assert (clock["trigger_label"], clock["scheduled_for"]) == (
        "Recurring schedule",
        "2026-03-25T11:00:00Z",
    )
    assert (
        views.run_row({**base, "trigger_type": "manual", "trigger_metadata": {}, "payload": {}})[
            "trigger_label"
        ]
        == "Manual"
    )


def test_a_session_expires_when_idle_and_a_new_id_after_sign_in_retires_the_old_one():
    clock = [0.0]
    sessions = Sessions(idle_seconds=60, clock=lambda: clock[0])
    first, session = sessions.get(None)
    session.token = "secret"
    csrf = session.csrf
    second = sessions.rotate(first)
    assert second != first and session.csrf != csrf
    assert sessions.get(first)[1] is not session  # the old id is worth nothing now
    clock[0] = 30
    assert sessions.get(second)[1] is session
    clock[0] = 100
    _, fresh = sessions.get(second)
    assert fresh is not session and fresh.token is None


def test_a_flood_of_anonymous_sessions_evicts_them_before_any_signed_in_one():
    clock = [0.0]
    sessions = Sessions(idle_seconds=3600, clock=lambda: clock[0], limit=4)
    signed_id, signed = sessions.get(None)
    signed.token = "t"
    for step in range(20):
        clock[0] = step + 1
        sessions.get(None)
    assert len(sessions._by_id) <= 4
    assert sessions.get(signed_id)[1] is signed


def test_after_sign_in_only_a_path_of_the_console_is_a_target():
    from wfclock.console.app import _local_path

    assert _local_path("/schedules/acme/nightly") == "/schedules/acme/nightly"
    for elsewhere in ("//evil.example", "/\\evil.example", "https://evil.example", "/a?b=c"):
        assert _local_path(elsewhere) == "/"


def test_a_resumed_schedule_has_no_pause_reason_while_its_status_still_shows_the_last_one():
    obj = {"spec": {"paused": False}, "status": {"pauseReason": "maintenance"}}
    assert views.pause_reason(obj) == ""
    paused = {"spec": {"paused": True, "pauseReason": "freeze"}}
    assert views.pause_reason(paused) == "freeze"


def _offsite_policy(day="2026-03-27", launched=0):
    from wfclock.core.calendars import derive_calendar, validate_calendar
    from wfclock.core.status import FirePolicy

    spec = validate_calendar(
        {"dates": [{"date": day, "name": "Company offsite"}], "businessDaysOnly": True}
    )
    return FirePolicy({"office": derive_calendar(spec, NOW.date())}, launched)


BERLIN_OFFICE = {
    **BERLIN_0230,
    "dstPolicy": "RunOnceShiftMissing",
    "calendars": ["office"],
}


def test_the_timeline_marks_calendar_exclusions_with_the_calendars_name_and_busy_counts_runs_only():
    obj = wfs("office", BERLIN_OFFICE)
    line = views.timeline([obj], NOW, policies={obj["metadata"]["uid"]: _offsite_policy()})
    (lane,) = line["lanes"]
    # Wed 25 Mar to Wed 1 Apr: Fri 27 (offsite), Sat 28 and Sun 29 (weekend) are refused; the
    # Sunday's shift no longer matters, it is a weekend.
    assert [f["at"] for f in lane["fires"]] == [
        "2026-03-26T01:30:00Z",
        "2026-03-30T00:30:00Z",
        "2026-03-31T00:30:00Z",
        "2026-04-01T00:30:00Z",
    ]
    assert [(f["at"], f["calendar"], f["excluded"]) for f in lane["excluded"]] == [
        ("2026-03-27T01:30:00Z", "office", "excluded by calendar office: Company offsite"),
        ("2026-03-28T01:30:00Z", "office", "excluded by calendar office: weekend"),
        ("2026-03-29T01:00:00Z", "office", "excluded by calendar office: weekend"),
    ]
    assert [x["schedule"] for x in line["excluded"]] == ["acme/office"] * 3
    assert lane["dst_policy"] == "RunOnceShiftMissing" and lane["calendars"] == ["office"]


def test_a_calendar_the_ledger_does_not_have_refuses_every_fire_as_the_launcher_does():
    from wfclock.core.status import FirePolicy

    obj = wfs("office", BERLIN_OFFICE)
    line = views.timeline([obj], NOW, policies={obj["metadata"]["uid"]: FirePolicy()})
    (lane,) = line["lanes"]
    assert lane["fires"] == []
    assert {f["excluded"] for f in lane["excluded"]} == {
        "excluded: calendar office does not exist (every fire is refused)"
    }
    # Calendars that could not be read are not applied (the page says why), not refused.
    unread = views.timeline([obj], NOW, policies=None)["lanes"][0]
    assert len(unread["fires"]) == 7 and unread["excluded"] == []


def test_bounds_end_the_timeline_at_active_until_and_at_the_fires_max_fires_leaves():
    until = {**BERLIN_0230, "activeUntil": "2026-03-27T12:00:00Z"}
    assert [f["at"] for f in views.timeline([wfs("u", until)], NOW)["lanes"][0]["fires"]] == [
        "2026-03-26T01:30:00Z",
        "2026-03-27T01:30:00Z",
    ]
    bounded = wfs("m", {**BERLIN_0230, "maxFires": 10})
    policy = _offsite_policy(launched=8)
    line = views.timeline([bounded], NOW, policies={bounded["metadata"]["uid"]: policy})
    assert len(line["lanes"][0]["fires"]) == 2  # 10 allowed, 8 launched
    later = wfs("f", {**BERLIN_0230, "activeFrom": "2026-03-30T00:00:00Z"})
    lane = views.timeline([later], NOW)["lanes"][0]
    assert {f["excluded"] for f in lane["excluded"]} == {"excluded: before activeFrom"}
    assert lane["fires"][0]["at"] == "2026-03-30T00:30:00Z"
    ended = wfs("e", BERLIN_0230, status={"phase": "Ended"})
    assert views.timeline([ended], NOW)["lanes"][0]["fires"] == []


def test_next_fires_from_the_status_list_its_excluded_fires_in_time_order():
    status = {
        "nextFires": [{"at": "2026-03-30T00:30:00Z", "local": "2026-03-30T02:30:00+02:00"}],
        "excludedFires": [
            {
                "at": "2026-03-27T01:30:00Z",
                "local": "2026-03-27T02:30:00+01:00",
                "reason": "calendar:office:Company offsite",
            }
        ],
    }
    fires = views.next_fires(wfs("o", BERLIN_OFFICE, status=status), NOW)
    assert [(f["at"], f.get("excluded"), f.get("calendar")) for f in fires] == [
        ("2026-03-27T01:30:00Z", "excluded by calendar office: Company offsite", "office"),
        ("2026-03-30T00:30:00Z", None, None),
    ]


def test_the_time_policy_shows_dst_policy_calendars_next_week_bounds_launched_and_jitter():
    trigger = {
        **BERLIN_OFFICE,
        "activeFrom": "2026-03-01T00:00:00Z",
        "activeUntil": "2026-06-30T22:00:00Z",
        "maxFires": 40,
        "jitter": "1m30s",
    }
    shown = views.time_policy(wfs("o", trigger), _offsite_policy(launched=12), NOW)
    assert shown["dst_policy"] == "RunOnceShiftMissing" and not shown["dst_policy_default"]
    (office,) = shown["calendars"]
    assert office["name"] == "office" and office["business_days_only"]
    assert [(e["date"], e["why"]) for e in office["excludes"]] == [
        ("2026-03-27", "Company offsite"),
        ("2026-03-28", "weekend"),
        ("2026-03-29", "weekend"),
    ]
    assert shown["active_until_zone"] == "2026-07-01 00:00 CEST (+02:00)"
    assert (shown["max_fires"], shown["launched"], shown["remaining"]) == (40, 12, 28)
    assert (shown["jitter"], shown["jitter_seconds"]) == ("1m30s", 90)
    default = views.time_policy(wfs("d", BERLIN_0230), None, NOW)
    assert default["dst_policy"] == "Auto" and default["dst_policy_default"]
    unread = views.time_policy(wfs("o", BERLIN_OFFICE), None, NOW)
    assert unread["calendars"][0]["missing"] is False and not unread["calendars"][0]["known"]
    assert (
        views.time_policy(
            wfs("x", {"type": "schedule", "runAt": "2026-04-01T00:00:00Z"}), None, NOW
        )
        == {}
    )


def test_the_list_offers_every_phase_and_an_ended_schedule_says_why():
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ended",
        "message": "the schedule ended: maxFires 3 reached (3 fires launched); its CronJob is removed",
    }
    obj = wfs("e", BERLIN_0230, status={"phase": "Ended", "conditions": [ready]})
    row = views.schedule_row(obj, None, NOW)
    assert row["phase"] == "Ended" and row["phase_message"].startswith(
        "the schedule ended: maxFires 3"
    )
    assert "Ended" in views.phase_choices([])
    assert views.filter_rows([row], phase="Ended") == [row]
    assert views.filter_rows([row], phase="Scheduled") == []


def test_a_schedule_row_carries_the_operators_answer_to_run_now():
    answer = {"requestId": "2026-03-25T11:59:00Z", "outcome": "refused", "reason": "paused"}
    obj = wfs(
        "r",
        BERLIN_0230,
        annotations={"wfclock.dev/run-now": "2026-03-25T11:59:00Z"},
        status={"runNow": answer},
    )
    row = views.schedule_row(obj, None, NOW)
    assert row["run_now_requested"] == "2026-03-25T11:59:00Z"
    assert row["run_now_answer"] == answer


def test_a_fire_the_status_notes_as_moved_by_a_gap_is_marked_shifted():
    note = "moved by a DST change: the planned wall time does not exist that day"
    status = {"nextFires": [{"at": "2026-03-29T01:00:00Z", "local": "x", "note": note}]}
    (fire,) = views.next_fires(wfs("s", BERLIN_OFFICE, status=status), NOW)
    assert fire["shifted"] and "excluded" not in fire
