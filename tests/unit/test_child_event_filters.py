"""Which events of a schedule's children reach a handler thread: decided on kopf's event loop,
from the event alone and what the operator remembers (pure, no cluster)."""

from types import SimpleNamespace

from wfclock.controller.handlers import _may_report, _spec_may_have_changed


def cronjob(generation, uid="u1"):
    return {"metadata": {"uid": uid, "generation": generation}, "status": {}}


def job(status, uid="j1"):
    return {"metadata": {"uid": uid}, "status": status}


def test_a_cronjobs_status_update_is_not_judged_but_a_spec_change_and_a_delete_are():
    memo = SimpleNamespace(cronjob_generations={"u1": 3})
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
