"""`make down` waits for the supervisor to be gone; a zombie is gone; a part of the stack that
fails to stop leaves the others stopped."""

import subprocess
import sys
import time
from pathlib import Path

from wfclock_devstack import localstack


def test_a_running_process_is_alive_and_its_zombie_is_not():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert localstack.alive(child.pid)
        child.stdin.close()
        # Not reaped: the child stays a zombie, as an orphaned supervisor does where the
        # machine's first process never reaps it.
        deadline = time.monotonic() + 10
        while localstack.alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not localstack.alive(child.pid)
        assert Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        child.wait()
    assert not localstack.alive(child.pid)


def test_a_step_of_the_teardown_that_fails_does_not_skip_the_steps_after_it(capsys):
    done = []

    def node_stop():
        done.append("node")
        raise subprocess.TimeoutExpired("kubectl delete pods", 20)

    localstack.teardown(
        ("the console", lambda: done.append("console")),
        ("the node", node_stop),
        ("the control plane", lambda: done.append("plane")),
        ("Postgres", None),  # never started
        ("Postgres's folder", lambda: done.append("folder")),
    )
    assert done == ["console", "node", "plane", "folder"]
    assert "stopping the node failed" in capsys.readouterr().err
