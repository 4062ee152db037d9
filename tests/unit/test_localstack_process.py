"""`make down` waits for the supervisor to be gone; a zombie is gone."""

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
