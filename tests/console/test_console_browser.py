"""The console in a real browser (Debian's Chromium, driven by Playwright) against the local
control plane, the real operator and a real Postgres. Screenshots of each page go to
test-results/console/."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from kubernetes import client
from wfclock.console import views
from wfclock.core.status import fire_outcome
from wfclock_devstack.processes import wait_until

from tests.console.conftest import (
    HIDDEN,
    OFFICE_CALENDAR,
    SCREENSHOTS,
    VIEWER_ZONE,
    VISIBLE,
    axe_script,
    service_account_token,
    sign_in,
    start_console,
    user_client,
)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(axe_script()))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def ledger_fires(database_url: str, uid: str) -> list[tuple[str, str]]:
    """The schedule's fires in the ledger, newest first, each with its outcome as the status
    names it (a skip the accounting recorded as missed reads `missed`)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT scheduled_for, outcome, reason FROM workflow_schedule_fires"
            " WHERE schedule_id = %s ORDER BY scheduled_for DESC LIMIT 20",
            (uid,),
        ).fetchall()
    return [
        (views.utc_iso(at), fire_outcome({"outcome": outcome, "reason": reason}))
        for at, outcome, reason in rows
    ]


def apply_filters(page) -> None:
    """Submits the filter form and waits for the page it loads (read before, the old page or
    an empty one mid-navigation would be what the test sees)."""
    with page.expect_navigation(wait_until="load"):
        page.click("form.filters button")


def api_refusal(stack, token: str, body: dict) -> str:
    """What the API server itself says when this user makes this patch."""
    api = user_client(stack.api, token)
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", "hourly-report", body
        )
    except client.ApiException as exc:
        return json.loads(exc.body)["message"]
    finally:
        api.close()
    pytest.fail("the API server accepted the patch it should refuse")


def office_close(stack) -> dict:
    return stack.objects.get_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", "office-close"
    )


def hourly(stack) -> dict:
    return stack.objects.get_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", "hourly-report"
    )


def test_a_token_the_api_server_rejects_does_not_sign_in(stack, page):
    response = page.goto(f"{stack.url}/")
    assert page.url.startswith(f"{stack.url}/login")
    # Only the console's own files run; no framing.
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-frame-options"] == "DENY"
    page.fill("#token", "not-a-real-token")
    page.click("button[type=submit]")
    assert "token: not accepted by the API server" in page.inner_text("#login-error")
    assert serious_violations(page) == []
    shot(page, "1-sign-in-refused")


def test_a_viewer_sees_the_schedules_timeline_and_fires_of_its_namespace_only(stack, page):
    sign_in(page, stack.url, stack.tokens["view"])
    assert page.inner_text("#username") == f"system:serviceaccount:{VISIBLE}:victor"
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert stack.tokens["view"] not in cookie["value"]  # the token stays on the server

    rows = page.locator("#schedules tbody tr[data-schedule]")
    shown = sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.schedule)"))
    assert shown == [
        f"{VISIBLE}/{n}"
        for n in ("hourly-report", "office-close", "quarter-hour", "year-end-close")
    ]
    assert HIDDEN not in page.content() and "globex-secret" not in page.content()
    row = page.locator(f'tr[data-schedule="{VISIBLE}/hourly-report"]')
    assert "At 15 minutes past the hour" in row.inner_text()
    assert "Europe/Berlin" in row.inner_text()
    api_next = hourly(stack)["status"]["nextFires"][0]["at"]
    assert row.locator(".countdown").get_attribute("data-at") == api_next
    assert row.locator("time.local").get_attribute("datetime") == api_next
    assert "GMT+9" in row.locator("time.local").inner_text()
    assert f"your time zone: {VIEWER_ZONE}" in page.inner_text("footer")
    assert serious_violations(page) == []
    shot(page, "2-schedules")

    page.select_option("#f-type", "schedule")
    apply_filters(page)
    shown = page.locator("#schedules tbody tr[data-schedule]").evaluate_all(
        "rs => rs.map(r => r.dataset.schedule)"
    )
    assert shown == [f"{VISIBLE}/year-end-close"]

    page.goto(f"{stack.url}/timeline")
    assert page.locator("#timeline tr.load rect.hour").count() == 168
    lanes = page.locator("#timeline tbody tr[data-schedule]")
    assert lanes.count() == 4
    # 7 days of fires: hourly 168, quarter-hour 672, the one-time 1; every :15 coincides.
    # office-close: 7 daily fires, the one on the calendar's closed day excluded (no run).
    counts = {
        lanes.nth(i).get_attribute("data-schedule"): lanes.nth(i)
        .locator("rect.fire:not(.excluded)")
        .count()
        for i in range(4)
    }
    assert counts == {
        f"{VISIBLE}/hourly-report": 168,
        f"{VISIBLE}/office-close": 6,
        f"{VISIBLE}/quarter-hour": 672,
        f"{VISIBLE}/year-end-close": 1,
    }
    assert page.locator(f'tr[data-schedule="{VISIBLE}/hourly-report"] rect.busy').count() == 168
    assert "2 fires start together" in page.inner_text("#busiest")
    assert serious_violations(page) == []
    shot(page, "3-timeline")
    # The exclusion the operator lists in the status is the one the timeline marks.
    office = office_close(stack)
    (excluded,) = office["status"]["excludedFires"]
    mark = page.locator(f'tr[data-schedule="{VISIBLE}/office-close"] rect.fire.excluded')
    assert mark.count() == 1 and mark.get_attribute("data-at") == excluded["at"]
    assert mark.get_attribute("data-calendar") == OFFICE_CALENDAR
    listed = page.inner_text(f'#exclusions li[data-schedule="{VISIBLE}/office-close"]')
    assert f"excluded by calendar {OFFICE_CALENDAR}: Company offsite" in listed
    runs_at = page.locator(
        f'tr[data-schedule="{VISIBLE}/office-close"] rect.fire:not(.excluded)'
    ).evaluate_all("rs => rs.map(r => r.dataset.at)")
    # Compared after this instant: a fire that passes during the test leaves the timeline at
    # once and the status at its next refresh.
    after = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    upcoming = [f["at"] for f in office["status"]["nextFires"] if f["at"] > after]
    assert [at for at in runs_at if at > after][: len(upcoming)] == upcoming
    page.locator(f'#timeline tr[data-schedule="{VISIBLE}/office-close"]').screenshot(
        path=str(SCREENSHOTS / "8-timeline-calendar-exclusion.png")
    )

    page.goto(f"{stack.url}/schedules/{VISIBLE}/office-close")
    assert page.inner_text("#dst-policy") == "RunOnceSkipMissing"
    calendar = page.inner_text(f'#calendars li[data-calendar="{OFFICE_CALENDAR}"]')
    assert "Company offsite" in calendar and excluded["local"][:10] in calendar
    assert page.inner_text("#max-fires").startswith("500; 0 launched so far, 500 left")
    assert page.inner_text("#jitter").startswith("up to 30s (30 s)")
    row = page.locator(f'#next-fires tr.excluded[data-calendar="{OFFICE_CALENDAR}"]')
    assert row.locator("time").first.get_attribute("datetime") == excluded["at"]
    assert f"excluded by calendar {OFFICE_CALENDAR}: Company offsite" in row.inner_text()
    assert serious_violations(page) == []
    shot(page, "9-schedule-time-policy")

    page.goto(f"{stack.url}/schedules/{VISIBLE}/hourly-report")
    recent = page.locator("#recent-fires tbody tr").evaluate_all(
        "rs => rs.map(r => [r.querySelector('time').getAttribute('datetime'), r.cells[2].innerText])"
    )
    ledger = ledger_fires(stack.database_url, stack.hourly_uid)
    assert [tuple(r) for r in recent] == ledger
    assert {"launched", "missed"} <= {outcome for _, outcome in ledger}
    assert len(recent) >= 3
    runs = page.locator("#runs tbody tr[data-run]")
    assert runs.count() == sum(outcome == "launched" for _, outcome in ledger)
    assert "Recurring schedule" in runs.first.inner_text()
    assert serious_violations(page) == []
    shot(page, "4-schedule")


def test_a_viewer_is_refused_actions_and_other_namespaces_with_the_api_servers_words(stack, page):
    sign_in(page, stack.url, stack.tokens["view"])
    before = hourly(stack)
    page.goto(f"{stack.url}/schedules/{VISIBLE}/hourly-report")
    page.fill("#pause-reason-input", "database maintenance")
    page.click("#pause")
    expected = api_refusal(stack, stack.tokens["view"], {"spec": {"paused": True}})
    assert "cannot patch resource" in expected
    assert page.inner_text("p.flash.error") == f"Kubernetes refused: {expected}"
    page.click("#run-now")
    assert page.inner_text("p.flash.error") == f"Kubernetes refused: {expected}"
    after = hourly(stack)
    assert after["spec"] == before["spec"]
    assert "wfclock.dev/run-now" not in (after["metadata"].get("annotations") or {})
    shot(page, "5-viewer-refused")

    page.goto(f"{stack.url}/schedules/{HIDDEN}/globex-secret")
    message = page.inner_text("#error-message")
    assert "cannot get resource" in message and HIDDEN in message
    assert "0 3 * * *" not in page.content()


def test_an_editor_pauses_with_a_reason_runs_now_and_resumes(stack, page):
    sign_in(page, stack.url, stack.tokens["edit"])
    page.goto(f"{stack.url}/schedules/{VISIBLE}/hourly-report")
    page.fill("#pause-reason-input", "database maintenance until 18:00")
    page.click("#pause")
    assert page.inner_text("p.flash.ok") == f"Paused {VISIBLE}/hourly-report"
    obj = hourly(stack)
    assert obj["spec"]["paused"] is True
    assert views.pause_reason(obj) == "database maintenance until 18:00"
    assert obj["metadata"]["annotations"]["wfclock.dev/paused-by"] == (
        f"system:serviceaccount:{VISIBLE}:alice"
    )
    assert page.inner_text("#pause-reason") == "database maintenance until 18:00"

    before = datetime.now(UTC).replace(microsecond=0)
    page.click("#run-now")
    assert page.inner_text("p.flash.ok") == f"Run now requested for {VISIBLE}/hourly-report"
    requested = hourly(stack)["metadata"]["annotations"]["wfclock.dev/run-now"]
    assert views._instant(requested) >= before
    shot(page, "6-editor-paused")

    page.fill("#resume-reason", "maintenance done")
    page.click("#resume")
    obj = hourly(stack)
    assert obj["spec"]["paused"] is False
    assert views.pause_reason(obj) == ""
    assert "maintenance done" in obj["metadata"]["annotations"]["wfclock.dev/resume-reason"]


def test_signing_out_forgets_the_session_and_its_token(stack, page):
    sign_in(page, stack.url, stack.tokens["edit"])
    (cookie,) = page.context.cookies()
    page.click("header form.who button")
    page.wait_for_url(f"{stack.url}/login")
    page.context.add_cookies([cookie])  # the old session id, replayed
    page.goto(f"{stack.url}/")
    assert page.url.startswith(f"{stack.url}/login")


def test_a_session_ends_when_the_api_server_stops_accepting_its_token(stack, page):
    core = client.CoreV1Api(stack.api)
    token = service_account_token(stack.api, VISIBLE, "leaver", "view")
    sign_in(page, stack.url, token)
    assert page.locator("#schedules tbody tr[data-schedule]").count() == 4
    core.delete_namespaced_service_account("leaver", VISIBLE)  # its tokens die with it

    def signed_out():  # once the API server's view of ServiceAccounts has caught up
        page.goto(f"{stack.url}/")
        return page.url.startswith(f"{stack.url}/login")

    wait_until(signed_out, 30, "the session to end with its token", interval=1)
    assert "no longer accepted" in page.inner_text("#login-error")


def test_a_pause_without_a_reason_is_refused_naming_the_field(stack, page):
    sign_in(page, stack.url, stack.tokens["edit"])
    page.goto(f"{stack.url}/schedules/{VISIBLE}/quarter-hour")
    csrf = page.locator("form[action$='/pause'] input[name=csrf]").get_attribute("value")
    page.request.post(
        f"{stack.url}/schedules/{VISIBLE}/quarter-hour/pause",
        form={"reason": "  ", "csrf": csrf},
        max_redirects=0,
    )
    page.goto(f"{stack.url}/schedules/{VISIBLE}/quarter-hour")
    assert page.inner_text("p.flash.error").startswith("reason: empty; say why")
    obj = stack.objects.get_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", "quarter-hour"
    )
    assert obj["spec"].get("paused") is not True


def test_with_a_certificate_the_console_serves_https_and_its_cookie_is_secure(stack):
    import ssl
    import urllib.request

    files = stack.control_plane.files  # a serving certificate for 127.0.0.1 and its CA
    env = {
        **stack.console_env,
        "WFCLOCK_CONSOLE_TLS_CERT_FILE": str(files["apiserver.crt"]),
        "WFCLOCK_CONSOLE_TLS_KEY_FILE": str(files["apiserver.key"]),
    }
    console, url = start_console(env, stack.tmp / "console-tls.log", "https", files["ca.crt"])
    try:
        context = ssl.create_default_context(cafile=str(files["ca.crt"]))
        with urllib.request.urlopen(f"{url}/login", timeout=10, context=context) as response:
            cookie = response.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    finally:
        console.terminate()
        console.wait(10)


def test_an_action_without_the_forms_csrf_token_changes_nothing(stack, page):
    sign_in(page, stack.url, stack.tokens["edit"])
    response = page.request.post(
        f"{stack.url}/schedules/{VISIBLE}/quarter-hour/pause",
        form={"reason": "forged", "csrf": "guessed"},
        max_redirects=0,
    )
    assert response.status == 403
    assert "CSRF" in response.text()
    obj = stack.objects.get_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", "quarter-hour"
    )
    assert obj["spec"].get("paused") is not True


def test_runs_show_the_visible_tenants_runs_by_trigger_type_with_provenance(stack, page):
    sign_in(page, stack.url, stack.tokens["view"])
    page.goto(f"{stack.url}/runs")
    labels = page.locator("#runs tbody tr[data-run] td.trigger").all_inner_texts()
    assert any(label.startswith("Manual") for label in labels)
    assert any(label.startswith("Event: invoice.paid") for label in labels)
    assert any(label.startswith("Recurring schedule") for label in labels)
    assert "globex" not in page.inner_text("#runs")
    with psycopg.connect(stack.database_url) as conn:
        (acme_runs,) = conn.execute(
            "SELECT count(*) FROM workflow_runs r LEFT JOIN workflow_schedules s USING "
            "(schedule_id) WHERE s.namespace = %s OR (r.schedule_id IS NULL AND r.tenant = 'acme')",
            (VISIBLE,),
        ).fetchone()
    assert len(labels) == acme_runs
    page.locator("#runs tbody tr[data-run] details").first.locator("summary").click()
    assert serious_violations(page) == []
    shot(page, "7-runs")

    page.select_option("#f-trigger", "event")
    apply_filters(page)
    labels = page.locator("#runs tbody tr[data-run] td.trigger").all_inner_texts()
    assert labels == ["Event: invoice.paid"]
    page.locator("#runs details summary").click()
    assert '"invoice": 7' in page.inner_text("#runs")
    assert '"eventId": "evt-42"' in page.inner_text("#runs")


def test_the_console_reads_the_ledger_with_a_login_that_can_write_nothing(stack):
    with psycopg.connect(stack.console_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM workflow_runs").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM workflow_runs")
    with psycopg.connect(stack.console_database_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # the grants still hold
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE workflow_runs SET status = 'done'")
    with (
        psycopg.connect(stack.console_database_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT quiet FROM workflow_schedules")
    assert uuid.UUID(stack.hourly_uid)
