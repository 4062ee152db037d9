"""The code passes the project's linters (ruff check and ruff format)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["operator", "launcher_job", "devstack", "tests", "bench"]


def test_ruff_check_and_format():
    ruff = str(Path(sys.executable).parent / "ruff")
    for args in (["check", *PATHS], ["format", "--check", *PATHS]):
        done = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
