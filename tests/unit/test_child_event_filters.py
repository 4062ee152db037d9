"""Which events of a schedule's children reach a handler thread: decided on kopf's event loop,
from the event alone and what the operator remembers (pure, no cluster)."""

import logging
from types import SimpleNamespace

import urllib3.exceptions
from wfclock.controller import drift
from wfclock.controller.handlers import _may_report, _spec_may_have_changed, cronjob_changed


def cronjob(generation, uid="u1"):
    return {"metadata": {"uid": uid, "generation": generation}, "status": {}}


def job(status, uid="j1"):
    return {"metadata": {"uid": uid}, "status": status}


def test_a_cronjobs_status_update_is_not_judged_but_a_spec_change_and_a_delete_are():
    memo = SimpleNamespace(ctx=SimpleNamespace(judged_cronjobs={"u1": 3}))
    assert not _spec_may_have_changed(cronjob(3), "MODIFIED", memo)  # status only
    assert _spec_may_have_changed(cronjob(4), "MODIFIED", memo)  # spec edited
    assert _spec_may_have_changed(cronjob(3), "DELETED", memo)
    assert _spec_may_have_changed(cronjob(1, uid="u2"), "MODIFIED", memo)  # never judged
    assert _spec_may_have_changed(cronjob(1, uid="u2"), "MODIFIED", SimpleNamespace())
    # The first listing and a creation: the resync compares those.
    assert not _spec_may_have_changed(cronjob(1, uid="u2"), None, memo)
    assert not _spec_may_have_changed(cronjob(1, uid="u2"), "ADDED", memo)


def test_only_a_finished_job_not_yet_reported_or_a_deleted_one_is_reported():
    memo = SimpleNamespace(finished_jobs={"done"})
    running = {"active": 1}
    succeeded = {"succeeded": 1, "completionTime": "2026-11-27T10:00:05Z"}
    failed = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}
    assert not _may_report(job(running), "MODIFIED", memo)
    assert not _may_report(job({}), "ADDED", memo)
    assert _may_report(job(succeeded), "MODIFIED", memo)
    assert _may_report(job(failed), "MODIFIED", memo)
    assert not _may_report(job(succeeded, uid="done"), "MODIFIED", memo)  # reported already
    assert _may_report(job(running, uid="done"), "DELETED", memo)


def test_a_generation_counts_as_judged_only_once_its_judgement_ran_without_error(monkeypatch):
    """A database blip while a hand edit is judged: the CronJob's next event (a status update
    at the same generation) is judged again, not filtered out until the resync."""
    memo = SimpleNamespace(ctx=SimpleNamespace(judged_cronjobs={"u1": 3}))
    outcomes = [urllib3.exceptions.ProtocolError("connection reset"), None, None]

    def judge(ctx, body, deleted):
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(drift, "cronjob_changed", judge)
    log = logging.getLogger("test")
    cronjob_changed(body=cronjob(4), type="MODIFIED", memo=memo, logger=log)
    assert "u1" not in memo.ctx.judged_cronjobs
    assert _spec_may_have_changed(cronjob(4), "MODIFIED", memo)  # judged again
    cronjob_changed(body=cronjob(4), type="MODIFIED", memo=memo, logger=log)
    assert memo.ctx.judged_cronjobs == {"u1": 4}
    assert not _spec_may_have_changed(cronjob(4), "MODIFIED", memo)
    cronjob_changed(body=cronjob(4), type="DELETED", memo=memo, logger=log)
    assert memo.ctx.judged_cronjobs == {} and not outcomes
