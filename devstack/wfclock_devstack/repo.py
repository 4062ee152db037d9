"""The wfclock checkout the harness works from (its scripts, CRDs, admission policy, examples)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_MARKER = Path("scripts") / "build-control-plane.sh"


@cache
def repository() -> Path:
    """`$WFCLOCK_REPO`, else the nearest folder holding `scripts/build-control-plane.sh` above the
    harness (an editable install lives in the checkout) or above the working directory."""
    if os.environ.get("WFCLOCK_REPO"):
        return Path(os.environ["WFCLOCK_REPO"]).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / _MARKER).is_file():
                return folder
    raise RuntimeError(
        "cannot find the wfclock checkout (a folder with scripts/build-control-plane.sh); "
        "run from inside it or set WFCLOCK_REPO"
    )
