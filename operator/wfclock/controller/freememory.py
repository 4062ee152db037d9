"""Memory freed after a burst, given back to the system.

glibc keeps what its arenas freed for later use: after a mass apply (thousands of
registrations across the handler threads) the operator held 86 MB free but kept, out of 253 MB
taken from the system (`bench/_memprobe.py`, 2,000 schedules). `malloc_trim(0)` returns the
free pages; the operator calls it every minute, which costs milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("wfclock.operator")
TRIM_INTERVAL_SECONDS = 60


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> int:
    """Gives glibc's free memory back to the system; the resident bytes that freed (0 where
    the C library is not glibc)."""
    if _LIBC is None:
        return 0
    before = resident_bytes()
    _LIBC.malloc_trim(0)
    freed = before - resident_bytes()
    if freed > 1 << 20:
        log.debug("gave %d MiB of freed memory back to the system", freed >> 20)
    return freed
