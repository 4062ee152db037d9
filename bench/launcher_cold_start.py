"""Wall time of `python -m launcher_job` for one fire, process start to exit, against
`python -c "import psycopg"`, as a ratio of medians over repeated runs (interleaved).
Usage: python bench/launcher_cold_start.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta

from _support import EPOCH, database, every_minute_schedule


def timed(argv, env) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(runs: int) -> None:
    with database() as url:
        schedule_id = every_minute_schedule(url)
        env = {
            **os.environ,
            "WFCLOCK_DATABASE_URL": url,
            "WFCLOCK_SCHEDULE_ID": str(schedule_id),
            "WFCLOCK_CRON": "* * * * *",
            "WFCLOCK_TIMEZONE": "Europe/Berlin",
        }
        baseline, launcher = [], []
        for i in range(runs):
            minutes = int((EPOCH + timedelta(minutes=i)).timestamp()) // 60
            job_env = {**env, "WFCLOCK_JOB_NAME": f"bench-cron-{minutes}"}
            baseline.append(timed([sys.executable, "-c", "import psycopg"], env))
            launcher.append(timed([sys.executable, "-m", "launcher_job"], job_env))
    b, lt = statistics.median(baseline), statistics.median(launcher)
    print(f"runs: {runs}")
    print(f"python -c 'import psycopg': median {b * 1000:.0f} ms")
    print(
        f"python -m launcher_job:     median {lt * 1000:.0f} ms (one fire, connect + transaction)"
    )
    print(f"ratio launcher/import: {lt / b:.2f} (target <= 2)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
