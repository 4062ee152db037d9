"""Runs the operator (`python -m wfclock.controller`) with a probe thread that answers the
memory benchmark: a file `<PROBE_DIR>/ask-<n>` asks for the process's figures, written to
`ask-<n>.json` (Python objects, glibc's malloc statistics, and with PROBE_TRACEMALLOC=<frames>
a tracemalloc snapshot `ask-<n>.snap`); `ask-<n>-trim` calls glibc's `malloc_trim(0)` first.
A benchmark aid only: the operator's image runs `python -m wfclock.controller` itself."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def figures(directory: Path, name: str, frames: int) -> dict:
    if name.endswith("-trim"):
        LIBC.malloc_trim(0)
    gc.collect()
    info = LIBC.mallinfo2()
    found = {
        "gc_objects": len(gc.get_objects()),
        "python_blocks": sys.getallocatedblocks(),
        "threads": threading.active_count(),
        # glibc: bytes taken from the system (main arena + thread arenas, and mmapped blocks),
        # bytes in use, bytes free but kept.
        "malloc_system": info.arena + info.hblkhd,
        "malloc_in_use": info.uordblks + info.hblkhd,
        "malloc_free_kept": info.fordblks,
    }
    if frames:
        snapshot = tracemalloc.take_snapshot()
        found["traced"] = sum(s.size for s in snapshot.statistics("filename"))
        snapshot.dump(str(directory / f"{name}.snap"))
    return found


def answer(directory: Path, frames: int) -> None:
    while True:
        for request in sorted(directory.glob("ask-*")):
            if request.suffix:
                continue
            result = figures(directory, request.name, frames)
            partial = directory / f"{request.name}.part"
            partial.write_text(json.dumps(result))
            partial.rename(directory / f"{request.name}.json")
            request.unlink()
        time.sleep(0.2)


def main() -> None:
    frames = int(os.environ.get("PROBE_TRACEMALLOC") or 0)
    if frames:
        tracemalloc.start(frames)
    directory = Path(os.environ["PROBE_DIR"])
    threading.Thread(target=answer, args=(directory, frames), daemon=True).start()
    sys.argv = ["wfclock.controller"]
    runpy.run_module("wfclock.controller", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
