"""The one-time release queue: what counts is the latest entry of a schedule, and a retry never
brings back an entry that was forgotten while it waited."""

import threading
import time
from datetime import UTC, datetime, timedelta

from wfclock.controller import releases
from wfclock.controller.releases import Release, ReleaseQueue


def entry(job_name="once-abc-1", deadline=300, run_at=None):
    run_at = run_at or datetime.now(UTC) - timedelta(seconds=1)
    return Release(run_at, "uid-1", "acme", "once", job_name, deadline)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_new_job_name_for_the_same_instant_replaces_the_old_entry():
    released = []
    queue = ReleaseQueue(lambda e, now: released.append(e.job_name), workers=1)
    later = datetime.now(UTC) + timedelta(seconds=0.3)
    queue.schedule(entry("once-old-1", run_at=later))
    queue.schedule(entry("once-new-1", run_at=later))
    queue.start()
    try:
        assert wait_for(lambda: released)
        time.sleep(0.2)
        assert released == ["once-new-1"]
    finally:
        queue.stop()


def test_a_failed_release_is_retried_unless_the_entry_was_forgotten_meanwhile(monkeypatch):
    monkeypatch.setattr(releases, "RETRY_SECONDS", 0.2, raising=False)
    calls = []
    failed_once = threading.Event()

    def release(e, now):
        calls.append(e.job_name)
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("API server unavailable")

    queue = ReleaseQueue(release, workers=1)
    queue.start()
    try:
        queue.schedule(entry("retried-1"))
        assert wait_for(lambda: calls == ["retried-1", "retried-1"])
        failed_once.clear()
        calls.clear()
        queue.schedule(Release(datetime.now(UTC), "uid-2", "acme", "gone", "gone-1", 300))
        assert wait_for(lambda: calls == ["gone-1"])
        queue.forget("uid-2")  # paused or deleted while the retry waits
        time.sleep(0.6)
        assert calls == ["gone-1"] and len(queue) == 0
    finally:
        queue.stop()


def test_waiting_for_a_schedules_release_waits_for_the_one_under_way_but_never_for_itself():
    """A reconcile judging a one-time fire missed waits for its release under way (which may be
    releasing the Job); a release that restores its schedule reconciles it, in its own thread,
    and must not wait for itself."""
    go_on, inside, seen = threading.Event(), threading.Event(), []

    def release(e, now):
        seen.append(queue.wait_idle(e.uid, timeout=0))  # its own release: idle at once
        inside.set()
        go_on.wait(5)

    queue = ReleaseQueue(release, workers=1)
    queue.start()
    try:
        queue.schedule(entry())
        assert inside.wait(5)
        assert seen == [True]
        assert not queue.wait_idle("uid-1", timeout=0.05)  # still releasing
        assert queue.wait_idle("uid-2", timeout=0)  # another schedule's release
        go_on.set()
        assert queue.wait_idle("uid-1", timeout=5)
    finally:
        go_on.set()
        queue.stop()
