"""`python -m wfclock.console` / `wfclock console` refuse to start without their read-only
database login, saying how to make one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_console_without_a_database_url_says_how_to_make_its_login():
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")}
    for argv in (
        [sys.executable, "-m", "wfclock.console"],
        [str(Path(sys.executable).parent / "wfclock"), "console"],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "WFCLOCK_CONSOLE_DATABASE_URL is not set" in done.stderr
        assert "wfclock db console-role LOGIN" in done.stderr
