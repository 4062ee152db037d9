"""The CLI commands that need no database: preview and validate."""

from wfclock.cli import main


def test_preview_lists_local_and_utc_times_with_dst_notes(capsys):
    code = main(
        [
            "preview",
            "--cron",
            "30 1 * * *",
            "--timezone",
            "America/New_York",
            "--from",
            "2026-10-31T12:00:00Z",
            "--count",
            "3",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith("2026-11-01T01:30:00-04:00  2026-11-01T05:30:00Z")
    assert (
        lines[1].startswith("2026-11-01T01:30:00-05:00  2026-11-01T06:30:00Z")
        and "doubled" in lines[1]
    )


def test_preview_refuses_a_bad_cron_with_exit_2(capsys):
    assert main(["preview", "--cron", "0 0 12 * * *", "--timezone", "UTC"]) == 2
    assert "expected exactly 5" in capsys.readouterr().err


def test_validate_reports_each_problem_and_exits_1(tmp_path, capsys):
    manifest = tmp_path / "s.yaml"
    manifest.write_text(
        "apiVersion: wfclock.dev/v1alpha1\nkind: WorkflowSchedule\nmetadata: {name: s}\n"
        "spec: {tenant: acme, workflowId: 0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11, workflowVersion: 1,\n"
        "  trigger: {type: recurring, cron: '*/2 * * * *', timezone: UTC}}\n"
    )
    assert main(["validate", str(manifest)]) == 1
    assert "WorkflowSchedule/s: spec.trigger.cron:" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2


CALENDAR = """apiVersion: wfclock.dev/v1alpha1
kind: WorkflowCalendar
metadata: {name: bavaria}
spec:
  holidays: {country: DE, subdivision: BY}
  dates: [{date: "2026-01-07", name: inventory day}]
"""


def test_preview_with_a_calendar_marks_the_excluded_dates_with_their_reason(tmp_path, capsys):
    calendar = tmp_path / "calendar.yaml"
    calendar.write_text(CALENDAR)
    args = ["preview", "--cron", "0 9 * * *", "--timezone", "Europe/Berlin"]
    code = main(
        [*args, "--from", "2026-01-05T12:00:00Z", "--count", "2", "--calendar", str(calendar)]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines == [
        "2026-01-06T09:00:00+01:00  2026-01-06T08:00:00Z  (excluded: calendar:bavaria:Epiphany)",
        "2026-01-07T09:00:00+01:00  2026-01-07T08:00:00Z  (excluded: calendar:bavaria:inventory day)",
        "2026-01-08T09:00:00+01:00  2026-01-08T08:00:00Z",
        "2026-01-09T09:00:00+01:00  2026-01-09T08:00:00Z",
    ]


def test_validate_checks_calendars_and_the_bounds_of_a_schedule(tmp_path, capsys):
    manifest = tmp_path / "s.yaml"
    manifest.write_text(
        CALENDAR.replace("country: DE", "country: XX")
        + "---\napiVersion: wfclock.dev/v1alpha1\nkind: WorkflowSchedule\nmetadata: {name: s}\n"
        "spec: {tenant: acme, workflowId: 0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11, workflowVersion: 1,\n"
        "  trigger: {type: recurring, cron: '0 9 * * *', timezone: UTC, jitter: 2d}}\n"
    )
    assert main(["validate", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "WorkflowCalendar/bavaria: spec.holidays.country: 'XX' is not a country" in out
    assert "WorkflowSchedule/s: spec.trigger.jitter: '2d' is not a duration" in out
