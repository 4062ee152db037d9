"""The operator gives glibc's free memory back to the system (controller/freememory.py): after a
burst of allocations in a thread, freed but kept by its arena, a trim brings the resident
memory down again."""

import subprocess
import sys

BURST = """
import threading
from wfclock.controller import freememory

def burst():
    kept, blocks = [], [bytearray(2048) for _ in range(60_000)]  # 120 MiB in glibc's arena
    kept.extend(blocks[::200])  # a few survive: the arena cannot shrink from its top alone
    blocks.clear()
    return kept

survivors = []
thread = threading.Thread(target=lambda: survivors.append(burst()))
thread.start()
thread.join()
before = freememory.resident_bytes()
freed = freememory.trim()
print(before >> 20, freed >> 20, freememory.resident_bytes() >> 20)
"""


def test_a_trim_gives_back_what_a_burst_freed():
    out = subprocess.run(
        [sys.executable, "-c", BURST], capture_output=True, text=True, check=True, timeout=60
    )
    before, freed, after = map(int, out.stdout.split())
    assert freed >= 60, (before, freed, after)  # most of the 120 MiB freed by the burst
    assert after < before
